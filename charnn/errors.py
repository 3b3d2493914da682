"""Errors a user can cause. The CLI turns each into a one-line message and a non-zero exit."""


class CharnnError(Exception):
    """Base class: something about the user's input or files is wrong (not a bug in charnn)."""


class CorpusError(CharnnError):
    """The corpus is missing, empty, not UTF-8, or too short for the requested batch."""


class VocabError(CharnnError):
    """Text contains characters the model's vocabulary does not have."""


class CheckpointError(CharnnError):
    """A checkpoint is missing, corrupt, or incompatible with this version or this run."""


class DivergedError(CharnnError):
    """Training produced a non-finite loss or gradient; the last good checkpoint was kept."""


class LockedError(CharnnError):
    """Another live process is writing the same file (a second run with the same --out)."""
