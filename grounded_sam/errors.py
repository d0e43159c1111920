"""Exceptions that tell the user what went wrong and what to do next."""

from __future__ import annotations

from pathlib import Path


class GroundedSamError(Exception):
    """Base class of every error this package raises on purpose."""


class ImageError(GroundedSamError, ValueError):
    """An input could not be turned into an RGB image.

    ``source`` names the input (a path, ``"<bytes>"``, ``"<ndarray>"``…) and ``reason`` says why.
    """

    def __init__(self, source: str, reason: str):
        self.source = source
        self.reason = reason
        super().__init__(f"cannot load image {source}: {reason}")


class PromptError(GroundedSamError, ValueError):
    """A text prompt or class list is empty or malformed."""


class CheckpointError(GroundedSamError, RuntimeError):
    """A checkpoint file exists but does not fit the model (wrong keys, shapes, format)."""


class MissingCheckpointError(GroundedSamError, FileNotFoundError):
    """A model file is not on disk. The message names the file and the command that fetches it."""

    def __init__(self, path: str | Path, name: str | None = None, hint: str | None = None):
        self.path = Path(path)
        self.name = name
        if hint is None:
            hint = (
                f"fetch it with `grounded-sam download {name}`"
                if name
                else "download the checkpoint and pass its path"
            )
        super().__init__(f"model file not found: {self.path} ({hint})")
