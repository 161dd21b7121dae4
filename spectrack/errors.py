"""Errors raised by spectrack for bad input, each with a documented exit code.

Every error a user can cause carries one clear line saying what is wrong and
how to fix it. The command line prints that line and exits with the code of
the error class; it never prints a traceback for these errors.

Exit codes
----------
0   success
1   unexpected internal error (a bug: please report it, with the traceback)
2   command-line usage error (unknown option, bad option value)
3   :class:`InputError`: a path is missing, unreadable or holds no usable image;
    :class:`OutputError`: the output folder cannot be written
4   :class:`MissingMetadataError`: a value the calculation needs is in no
    header and was not given as an option
5   :class:`InconsistentInputError`: the inputs contradict each other or
    physics (scan before injection, zero duration, two subjects in one folder)
6   :class:`LabelError`: the label map is unusable (no overlap with the
    SPECT, unreadable names)
7   :class:`BatchError`: a batch finished but some studies failed
"""

from __future__ import annotations

__all__ = [
    "SpectrackError",
    "InputError",
    "OutputError",
    "MissingMetadataError",
    "InconsistentInputError",
    "LabelError",
    "BatchError",
    "EXIT_CODES",
]


class SpectrackError(Exception):
    """Base class of every error caused by the user's input.

    Parameters
    ----------
    message : str
        One line: what is wrong and how to fix it.
    """

    exit_code = 1

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:  # one line, always
        return " ".join(str(self.message).split())


class InputError(SpectrackError):
    """A path is missing, unreadable, or holds no usable image (exit 3)."""

    exit_code = 3


class OutputError(InputError):
    """The output folder cannot be written (exit 3): ``cannot write to OUT: reason``.

    Parameters
    ----------
    out : path-like
        The output folder, as the user gave it.
    reason : str
        What went wrong (the system's words: "No space left on device"), and
        how to fix it when that is not obvious.
    """

    def __init__(self, out, reason: str):
        self.out, self.reason = out, reason
        super().__init__(f"cannot write to {out}: {reason}")


class MissingMetadataError(SpectrackError):
    """A needed value is in no header and no option gives it (exit 4).

    Parameters
    ----------
    what : str
        The quantity that is missing, e.g. ``"injected activity"``.
    tags : str
        The DICOM tag(s) or sidecar key(s) that were looked in.
    option : str
        The command-line option (and Python keyword) that supplies it.
    """

    exit_code = 4

    def __init__(self, what: str, tags: str, option: str):
        self.what, self.tags, self.option = what, tags, option
        super().__init__(
            f"missing {what}: not found in {tags}; give it with {option}"
        )


class InconsistentInputError(SpectrackError):
    """Inputs contradict each other or physics (exit 5)."""

    exit_code = 5


class LabelError(SpectrackError):
    """The label map cannot be used (exit 6)."""

    exit_code = 6


class BatchError(SpectrackError):
    """A batch run finished with failed studies (exit 7)."""

    exit_code = 7


EXIT_CODES = {
    0: "success",
    1: "unexpected internal error (a bug)",
    2: "command-line usage error",
    InputError.exit_code: "input missing, unreadable or without a usable image, or output not writable",
    MissingMetadataError.exit_code: "a needed value is in no header and no option",
    InconsistentInputError.exit_code: "inputs contradict each other or physics",
    LabelError.exit_code: "label map unusable",
    BatchError.exit_code: "batch finished with failed studies",
}
