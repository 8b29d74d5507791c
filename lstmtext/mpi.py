"""Data-parallel training over MPI: one model trained by N processes, the same run as on one.

Why MPI: it is the engine of every cluster, and mpi4py hands it NumPy buffers directly (no
pickling). `pip install 'lstmtext[mpi]'` brings mpi4py and MPICH, so a laptop runs the same
`mpiexec -n 2 lstmtext train ...` as a cluster. A plain `lstmtext train` never imports it.

How one run is shared (N ranks, global batch B, docs/many-machines.md "Many machines"):
- Rank r trains the columns [r·B//N, (r+1)·B//N) of the one-process run's (n, B) stream array and
  carries their state. Its loss is the mean over its T·B_r tokens, so the run's loss is
  Σ_r (B_r/B)·loss_r and its gradient Σ_r (B_r/B)·g_r: each rank scales by its share while it
  packs, and one Allreduce(SUM) per step on one flat buffer adds the shares up.
- The flat buffer is [loss, every dense gradient, embedding rows]. The embedding gradient is only
  the rows a step used (layers.RowGrad); each rank writes its row ids and rows into its own slot
  and leaves the other slots zero, so the sum is a gather (padding rows have id -1). That is used
  when the N slots of K·T·B_r·(E+1) numbers (K = --accumulate) are smaller than the dense V·E table
  (word models); otherwise the table goes dense (char models, tied weights).
- Every rank then clips and applies the same update to the same weights, so weights are sent once,
  at the start. Dropout: every rank draws the whole batch's masks from the same stream and keeps
  its own columns, so the masks are the one-process run's.
- Rank 0 alone reads and tokenizes the text (and sends each rank only its columns of the streams),
  validates, prints, and writes metrics and checkpoints (the carried state is gathered to it for
  `last.safetensors`, which holds the whole batch: a run resumes on any N). The decisions only
  rank 0 can make (time budget, patience), its clock, and the signals any rank may get are agreed
  on once per step with one small Allreduce(MAX) (`Group.agree`).
"""

import hashlib
import json
import os
import signal
import sys
import time
from contextlib import contextmanager

import numpy as np

from lstmtext import threads
from lstmtext.errors import ConfigError, LstmTextError
from lstmtext.layers import RowGrad, sum_rows

INSTALL = "pip install 'lstmtext[mpi]'"


def _launched() -> tuple[int, int]:
    """(size, rank) as an MPI launcher announced them in the environment, (1, 0) without one:
    known without importing MPI (MPICH/Hydra and Slurm's PMI, Open MPI, MVAPICH, srun with PMIx)."""
    known = (
        ("PMI_SIZE", "PMI_RANK"),
        ("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"),
        ("MV2_COMM_WORLD_SIZE", "MV2_COMM_WORLD_RANK"),
        ("SLURM_STEP_NUM_TASKS", "PMIX_RANK"),  # PMIX_RANK only under a PMIx launch, not in a batch script
    )
    for size, rank in known:  # a launcher sets both of its pair
        if os.environ.get(size, "").isdigit() and os.environ.get(rank, "").isdigit():
            return int(os.environ[size]), int(os.environ[rank])
    return 1, 0


def launched_rank() -> int:
    return _launched()[1]


class MPIMissing(ConfigError):
    every_rank = True  # every rank finds it missing; rank 0 says so


def world() -> "Group | None":
    """The group of processes training this run, or None for one process. MPI is imported only
    when a launcher started more than one process (or `python -m mpi4py` already imported it)."""
    size, _ = _launched()
    if size <= 1 and "mpi4py.MPI" not in sys.modules:
        return None
    try:
        from mpi4py import MPI
    except ImportError:
        raise MPIMissing(
            f"this command was started by an MPI launcher with {size} processes, but mpi4py is not "
            f"installed: {INSTALL}"
        ) from None
    if MPI.COMM_WORLD.Get_size() == 1:
        return None
    return Group(MPI.COMM_WORLD)


class Released(LstmTextError):
    """A rank other than 0 told by rank 0 to exit before training: rank 0 has said why (if anything)."""

    every_rank = True

    def __init__(self, code: int):
        super().__init__("")
        self.code = code


class Group:
    """The ranks of one run and the few collective operations training needs."""

    def __init__(self, comm):
        from mpi4py import MPI

        self.MPI, self.comm = MPI, comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.started = False  # the start was sent: from now on the others wait in training's collectives

    def columns(self, batch: int) -> slice:
        """This rank's streams of the global batch."""
        if batch < self.size:
            raise ConfigError(
                f"--batch-size {batch} is smaller than the {self.size} processes; each process needs at least "
                f"one stream: use --batch-size {self.size} or more, or fewer processes"
            )
        return slice(self.rank * batch // self.size, (self.rank + 1) * batch // self.size)

    def threads(self) -> int:
        """BLAS threads per rank: the cores this rank may use, shared with the ranks on this machine
        that may use some of the same cores (all of them when the launcher binds nothing; those on
        the same socket under --bind-to socket), capped by OPENBLAS_NUM_THREADS if set."""
        local = self.comm.Split_type(self.MPI.COMM_TYPE_SHARED)
        try:
            if not hasattr(os, "sched_getaffinity"):
                return max(1, threads.allowed_cores() // local.Get_size())
            mine = os.sched_getaffinity(0)
            n_cpus = max(os.cpu_count() or 1, max(mine) + 1)
            width = np.array([n_cpus], dtype=np.int64)
            local.Allreduce(self.MPI.IN_PLACE, width, op=self.MPI.MAX)  # the same row length on every rank
            mask = np.zeros(int(width[0]), dtype=np.uint8)
            mask[sorted(mine)] = 1
            masks = np.empty((local.Get_size(), mask.size), dtype=np.uint8)  # (local ranks, cpus)
            local.Allgather(mask, masks)
        finally:
            local.Free()
        sharing = int((masks & mask).any(axis=1).sum())  # this rank included
        n = max(1, len(mine) // sharing)
        cap = os.environ.get("OPENBLAS_NUM_THREADS", "").strip()
        return min(n, int(cap)) if cap.isdigit() and int(cap) > 0 else n

    # -- the start: sent once by rank 0 --------------------------------------------------------

    def _wait(self, request) -> None:
        """Wait for a nonblocking collective without keeping a core busy. MPICH's blocking calls
        poll nonstop, so a rank waiting for rank 0 (reading the text, validating, writing a
        checkpoint) would burn a whole core for as long; here it polls for 2 ms, then every 1 ms."""
        t0 = time.perf_counter()
        while not request.Test():
            if time.perf_counter() - t0 > 0.002:
                time.sleep(0.001)

    def bcast_json(self, obj=None):
        data = json.dumps(obj).encode() if self.rank == 0 else b""
        n = np.array([len(data)], dtype=np.int64)
        self._wait(self.comm.Ibcast(n, root=0))  # the others wait here while rank 0 reads the text
        buf = np.frombuffer(data, dtype=np.uint8).copy() if self.rank == 0 else np.empty(int(n[0]), np.uint8)
        self.comm.Bcast(buf, root=0)
        return json.loads(buf.tobytes())

    def bcast_arrays(self, arrays: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """Rank 0's name -> array dict, on every rank (shapes and dtypes first, then one Bcast each)."""
        spec = self.bcast_json(None if arrays is None else [[k, list(a.shape), a.dtype.str] for k, a in arrays.items()])
        out = {}
        for name, shape, dtype in spec:
            if self.rank == 0:
                a = np.ascontiguousarray(arrays[name])
                if not a.flags.writeable:  # a memory-mapped cache: MPI wants a buffer it may write
                    a = a.copy()
            else:
                a = np.empty(shape, dtype=np.dtype(dtype))
            self.comm.Bcast(a, root=0)
            out[name] = a
        return out

    def scatter_columns(self, full: np.ndarray | None, batch: int, n: int = 0, dtype=None) -> np.ndarray:
        """Rank 0's (n, B) streams -> this rank's (n, B_r) columns; each rank receives only its own
        (n and dtype: what rank 0 announced, for the others)."""
        cols = self.columns(batch)
        if self.rank == 0:
            for r in range(1, self.size):
                block = np.ascontiguousarray(full[:, r * batch // self.size : (r + 1) * batch // self.size])
                self.comm.Send(block, dest=r)
            return np.ascontiguousarray(full[:, cols])
        out = np.empty((n, cols.stop - cols.start), dtype=dtype)  # (n, B_r)
        self._wait(self.comm.Irecv(out, source=0))
        return out

    def release(self, code: int) -> None:
        """Rank 0 ended before training started (a mistake, or nothing to do): the others exit with code."""
        self.bcast_json({"exit": code})
        self.started = True

    # -- once per step -------------------------------------------------------------------------

    def agree(
        self, finished: bool, signum: int | None, elapsed: float, valid_seconds: float = 0.0
    ) -> tuple[bool, int | None, float, float]:
        """Rank 0's verdict on the budget and its clock (elapsed seconds, and the seconds it keeps for the
        final validation: the learning rate's plan reads both, and must read the same on every rank),
        and any rank's signal: the same answer on every rank."""
        lead = self.rank == 0
        clock = [round(elapsed * 1e6), round(valid_seconds * 1e6)] if lead else [0, 0]
        flags = np.array([int(finished and lead), signum or 0, *clock], dtype=np.int64)
        self._wait(self.comm.Iallreduce(self.MPI.IN_PLACE, flags, op=self.MPI.MAX))  # while rank 0 validates
        return bool(flags[0]), int(flags[1]) or None, int(flags[2]) / 1e6, int(flags[3]) / 1e6

    def all(self, flag: bool) -> bool:
        """True on every rank if it is true on every rank."""
        x = np.array([int(flag)], dtype=np.int64)
        self.comm.Allreduce(self.MPI.IN_PLACE, x, op=self.MPI.MIN)
        return bool(x[0])

    def gather_columns(self, a: np.ndarray, batch: int) -> np.ndarray | None:
        """Every rank's (B_r, ...) rows -> the (B, ...) array on rank 0 (None elsewhere)."""
        a = np.ascontiguousarray(a)
        row = int(np.prod(a.shape[1:], dtype=np.int64))
        counts = [((r + 1) * batch // self.size - r * batch // self.size) * row for r in range(self.size)]
        full = np.empty((batch, *a.shape[1:]), dtype=a.dtype) if self.rank == 0 else None
        self._wait(self.comm.Igatherv(a, [full, counts] if self.rank == 0 else None, root=0))  # after validation
        return full

    def same_weights(self, params: dict) -> bool:
        """Whether every rank holds rank 0's weights bit for bit (a check at the end of a run)."""
        h = hashlib.sha256()
        for k in sorted(params):
            h.update(np.ascontiguousarray(params[k]).tobytes())
        mine = np.frombuffer(h.digest(), dtype=np.uint8).copy()
        ref = mine.copy()
        self._wait(self.comm.Ibcast(ref, root=0))  # while rank 0 runs its last validation
        ok = np.array([int(np.array_equal(mine, ref))], dtype=np.int64)
        self.comm.Allreduce(self.MPI.IN_PLACE, ok, op=self.MPI.MIN)
        return bool(ok[0])

    def abort(self, code: int) -> None:
        """End every rank now: the others may be waiting in a collective that will never complete."""
        sys.stderr.flush()
        self.comm.Abort(code)


def embedding_on_the_wire(ranks: int, V: int, E: int, dtype, batch: int, steps: int, rows: bool) -> tuple[bool, int]:
    """-> (sent as rows?, rows a rank's slot holds). Each rank gets a slot of as many rows as its
    tokens in a step (its share of the batch, the widest, times steps), each row its id and E
    values; rows when the ranks' slots together are smaller than the V × E table."""
    widest = max((r + 1) * batch // ranks - r * batch // ranks for r in range(ranks))
    slot = steps * widest
    fits = np.dtype(dtype) == np.float64 or V < 2**24  # row ids travel as floats: exact below 2^24 in float32
    return rows and fits and ranks * slot * (E + 1) < V * E, slot


class GradientSum:
    """Adds up the ranks' gradients and losses: one Allreduce per step on one flat buffer."""

    def __init__(self, group: Group, shapes: dict, dtype, batch: int, steps: int, sparse_embed: bool):
        """shapes: name -> shape of the gradients this run computes (frozen ones left out); steps: the
        time steps one optimizer step reads per stream (bptt · accumulate). sparse_embed: the
        embedding gradient comes as rows (untied); sent as rows if that is smaller."""
        self.group, self.batch = group, batch
        cols = group.columns(batch)
        self.share = (cols.stop - cols.start) / batch
        V, E = shapes.get("embed.W", (0, 0))
        self.sparse, self.slot = embedding_on_the_wire(group.size, V, E, dtype, batch, steps, sparse_embed)
        self.dense = [k for k in sorted(shapes) if not (self.sparse and k == "embed.W")]
        self.shapes = shapes
        self.spans, end = [], 1  # buffer[0] is the loss
        for k in self.dense:
            size = int(np.prod(shapes[k], dtype=np.int64))
            self.spans.append((k, end, end + size))
            end += size
        self.rows_at = end  # where the embedding rows begin
        n_sparse = group.size * self.slot * (E + 1) if self.sparse else 0
        self.buffer = np.zeros(end + n_sparse, dtype=dtype)
        self.E = E

    @property
    def numbers(self) -> int:
        """Numbers sent per step (the buffer's length)."""
        return self.buffer.size

    def __call__(self, grads: dict, loss: float) -> float:
        """Replace grads by the sums over the ranks (in place, as views of the buffer); -> the run's loss."""
        buf, share = self.buffer, self.share
        buf[0] = loss * share
        for k, a, b in self.spans:
            view = buf[a:b].reshape(self.shapes[k])
            g = grads[k]
            if isinstance(g, RowGrad):  # a dense exchange of the rows: zeros elsewhere
                view[...] = 0
                view[g.rows] = g.values * share
            else:
                np.multiply(g, share, out=view)
        if self.sparse:
            E, slot = self.E, self.slot
            region = buf[self.rows_at :]
            region[...] = 0  # the other ranks' slots stay zero, so the sum gathers
            ids = region[: self.group.size * slot].reshape(self.group.size, slot)  # (N, slot)
            rows = region[self.group.size * slot :].reshape(self.group.size, slot, E)  # (N, slot, E)
            g = grads["embed.W"]
            U = len(g.rows)
            ids[self.group.rank, :U] = g.rows
            ids[self.group.rank, U:] = -1
            np.multiply(g.values, share, out=rows[self.group.rank, :U])
        self.group.comm.Allreduce(self.group.MPI.IN_PLACE, buf, op=self.group.MPI.SUM)
        for k, a, b in self.spans:
            grads[k] = buf[a:b].reshape(self.shapes[k])
        if self.sparse:
            used = ids.reshape(-1) >= 0
            all_ids = ids.reshape(-1)[used].astype(np.int64)  # (U_all,) with repeats across ranks
            grads["embed.W"] = sum_rows(all_ids, rows.reshape(-1, E)[used], tuple(self.shapes["embed.W"]))  # (U, E)
        return float(buf[0])


@contextmanager
def leading(group: "Group | None"):
    """Rank 0's side of a run: whatever ends it must end the others too. Before the start they are
    told to exit (0 or 1); after it, an error only rank 0 has (a full disk, say) aborts them, since
    they wait in a collective; errors every rank has at the same step (a signal, divergence) do not."""
    if group is None:
        yield
        return
    try:
        yield
    except KeyboardInterrupt:  # Ctrl-C outside the training loop, which turns signals into a flag
        if not group.started:
            group.release(128 + signal.SIGINT)
        else:  # the start was sent and the others are training: end them too
            sys.stderr.write("interrupted\n")
            group.abort(128 + signal.SIGINT)
        raise
    except BaseException as e:
        if not group.started:
            group.release(1)
        elif not getattr(e, "every_rank", False):
            sys.stderr.write(f"error: {e}\n" if isinstance(e, LstmTextError) else f"error on rank 0: {e!r}\n")
            group.abort(1)
        raise
    if not group.started:
        group.release(0)
