"""Where a run is: what the learning-rate plan and the stop read, and what a checkpoint keeps so that a
resumed run goes on exactly where it stopped."""

from dataclasses import asdict, dataclass, field, fields


@dataclass
class Progress:
    epoch: int = 1  # the epoch under way, from 1 (after the last of --epochs, epochs + 1)
    window: int = 0  # windows done in this epoch
    step: int = 0  # optimizer steps done (one per window, or per --accumulate windows)
    tokens: int = 0  # training tokens seen, the whole batch's (on every MPI rank)
    elapsed: float = 0.0  # seconds on the run's clock, validations included, across resumes
    skipped: int = 0  # steps dropped by --on-nan skip
    best_valid_ppl: float | None = None
    last_valid_ppl: float | None = None
    last_valid_step: int = -1  # the step of the last validation (-1: none yet)
    bad_evals: int = 0  # validations in a row without a new best (--patience)
    lr_scale: float = 1.0  # the plan's learning rate times this: halved by each --rollback
    rollbacks: int = 0
    # --rollback tells a diverging run from an overfitting one by the training loss: its sum and steps
    # since the last validation, and the lowest such mean so far
    train_loss_sum: float = 0.0
    train_steps: int = 0
    best_train_loss: float | None = None
    # --plateau: each validation's loss since the start or the last rollback, the trigger's evidence;
    # the share of the budget where the plan now ends (below 1 once the decay was brought forward); the
    # step where that happened (-1: never)
    valid_history: list[float] = field(default_factory=list)
    plan_end: float = 1.0
    plateau_step: int = -1
    plan_ended: bool = False  # ... and whether the run reached that end
    # --max-minutes: seconds the plan keeps for the final validation (None until first timed) ...
    valid_seconds: float | None = None
    minutes_used: float | None = None  # ... and the budget, once the run stopped on it
    rng: dict | None = None  # the dropout generator's state, set when a checkpoint is written
    # --optimizer nt-asgd: the validation losses before averaging started, for its trigger
    valid_losses: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        """For the checkpoint's JSON header."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Progress":
        """From a checkpoint's header; keys an older lstmtext did not write take their defaults."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
