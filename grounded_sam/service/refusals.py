"""Telling a refused request (the user's input) from a bug (ours), for messages and the log.

A server answers both with a message, but logs them differently: a refusal is one line (the
user can fix it; a traceback would only bury real problems), a bug gets its traceback.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Iterable
from pathlib import Path

from grounded_sam.errors import GroundedSamError

_PACKAGE = Path(__file__).resolve().parents[1]  # grounded_sam/

# Errors our own checks raise on purpose when an argument is wrong.
_CHECK_ERRORS = (ValueError, TypeError, FileNotFoundError)


def raised_in(exc: BaseException) -> str | None:
    """The file of the frame that raised ``exc`` (the innermost of its traceback)."""
    frames = traceback.extract_tb(exc.__traceback__)
    return frames[-1].filename if frames else None


def is_refusal(exc: BaseException, own_files: Iterable[str | os.PathLike] = ()) -> bool:
    """True when ``exc`` is a deliberate refusal of bad input, False when it is a bug.

    Refusals are :class:`~grounded_sam.errors.GroundedSamError` (image, prompt, limit and
    checkpoint errors) and ``ValueError`` / ``TypeError`` / ``FileNotFoundError`` raised by a
    frame of the ``grounded_sam`` package or of ``own_files`` (e.g. the app's module); the
    same types raised inside numpy, torch or another library are bugs of ours that let a bad
    value through.
    """
    if isinstance(exc, GroundedSamError):
        return True
    if not isinstance(exc, _CHECK_ERRORS):
        return False
    where = raised_in(exc)
    if where is None:
        return False
    path = Path(where).resolve()
    return path.is_relative_to(_PACKAGE) or any(path == Path(f).resolve() for f in own_files)


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line (what the log and the user see of a refusal)."""
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())
