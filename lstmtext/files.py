"""Writing a file so that its name never holds half of it."""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replaced_when_whole(path: Path) -> Iterator[Path]:
    """Yield a temporary name beside `path` to write to; when the block ends normally it is renamed
    over `path` (atomic on one file system), and when it raises it is removed. So a full disk, an
    error or a kill leaves the old file (or none) under the name another program reads, never a
    half-written one. The ".NAME.tmp-PID" form is what a run directory's cleanup looks for."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
