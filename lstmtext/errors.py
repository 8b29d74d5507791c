"""The errors lstmtext raises for things a user can fix.

Library code raises these with the problem *and* the fix in the message; `cli.py` prints the message
as one line and exits with code 1. Anything else that escapes is a bug in lstmtext.
"""


class LstmTextError(Exception):
    """Base class: a problem the user can fix, described in one line."""

    # Under MPI (mpi.py): True for an error every rank raises at the same point, so no rank is left
    # waiting in a collective and rank 0 alone reports it; False for one a single rank may have.
    every_rank = False


class CorpusError(LstmTextError):
    """The training or evaluation text cannot be used (missing, empty, not UTF-8, too short)."""


class ConfigError(LstmTextError):
    """An option has an impossible value (non-positive size, --tie with embed != hidden, ...)."""


class CheckpointError(LstmTextError):
    """A checkpoint is missing, corrupted, of an unknown version, or does not fit its config."""


class TrainingError(LstmTextError):
    """Training cannot go on (diverged, run directory already in use, ...)."""


class Diverged(TrainingError):
    """A step's loss or gradient went non-finite or past all reason (trainer.healthy)."""

    every_rank = True  # the loss and norm are the whole batch's, and the ranks agree on the verdict
