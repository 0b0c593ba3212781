"""Errors raised for bad user input.

Every error a user can cause with a config key, a CLI argument, a dataset or a checkpoint is a
:class:`TransferError`. The CLI turns it into one line on stderr and exit code 2, with no traceback.
"""

import difflib


class TransferError(ValueError):
    """Bad input: names the key, the value and what is allowed."""


class TransferConfigError(TransferError):
    """A config key or value is invalid (unknown model, misspelled key, bad transfer spec...)."""


class TransferDataError(TransferError):
    """A dataset or derived domain is missing, empty or unusable for the evaluation protocol."""


class TransferLayerError(TransferError):
    """A layer named in a transfer spec does not exist, or its source and target shapes differ."""


class TransferCheckpointError(TransferError):
    """A checkpoint file is missing, not written by recbole_transfer, or not weights-only."""


def did_you_mean(name, choices):
    """Return ``" (did you mean 'x'?)"`` for the closest of ``choices``, or ``""``."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.7)
    return f" (did you mean '{close[0]}'?)" if close else ""
