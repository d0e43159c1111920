"""How much work one web request may ask for: limits with safe defaults, set by environment.

Every limit is checked before any model runs, and a request over a limit is refused with a
:class:`LimitExceeded` whose message names the value, the limit and the variable that raises
it. The defaults keep one request on a CPU within tens of seconds and a few GB of memory;
``app.py`` reads :meth:`Limits.from_env` once at start and prints them.

=====================================  ===========  ===========================================
variable                               default      what it bounds
=====================================  ===========  ===========================================
``GROUNDED_SAM_WEB_MAX_UPLOAD_MB``     20           size of one uploaded file (MB = 10^6 bytes)
``GROUNDED_SAM_WEB_MAX_PIXELS``        16777216     width x height of an image (4096 x 4096)
``GROUNDED_SAM_WEB_MAX_POINTS_PER_SIDE``  32        everything mode's grid (work grows as n^2)
``GROUNDED_SAM_WEB_MAX_CROP_LAYERS``   1            everything mode's ``crop_n_layers``
``GROUNDED_SAM_WEB_MAX_AMG_WORK``      1024         automatic masks' work: points_per_side^2
                                                    x (1 + crop_n_layers) x megapixels
``GROUNDED_SAM_WEB_MAX_POINTS``        64           clicked points in one ``/segment_points``
``GROUNDED_SAM_WEB_MAX_BOXES``         100          detections segmented per request (the best)
``GROUNDED_SAM_WEB_MAX_CLASSES``       64           classes in one prompt
``GROUNDED_SAM_WEB_MAX_PROMPT_CHARS``  2000         characters in one prompt
``GROUNDED_SAM_WEB_CONCURRENCY``       2            model requests running at once
``GROUNDED_SAM_WEB_QUEUE_SIZE``        32           requests waiting; more are turned away
=====================================  ===========  ===========================================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

from grounded_sam.errors import GroundedSamError

ENV_PREFIX = "GROUNDED_SAM_WEB_"


class LimitExceeded(GroundedSamError, ValueError):
    """A request asks for more than the server allows; the message names the limit."""


@dataclass(frozen=True)
class Limits:
    """The bounds on one request (see the module docstring for the defaults and variables)."""

    max_upload_mb: int = 20
    max_pixels: int = 4096 * 4096
    max_points_per_side: int = 32
    max_crop_layers: int = 1
    max_amg_work: int = 1024
    max_points: int = 64
    max_boxes: int = 100
    max_classes: int = 64
    max_prompt_chars: int = 2000
    concurrency: int = 2
    queue_size: int = 32

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            low = 0 if f.name == "max_crop_layers" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"limit {f.name} must be an integer >= {low}, got {value!r}")

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 1_000_000

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Limits:
        """The defaults, each overridden by ``GROUNDED_SAM_WEB_<NAME>`` when that is set."""
        environ = os.environ if environ is None else environ
        values = {}
        for f in fields(cls):
            var = env_name(f.name)
            raw = environ.get(var, "").strip()
            if not raw:
                continue
            try:
                values[f.name] = int(raw)
            except ValueError:
                raise ValueError(
                    f"{var}={raw!r} is not an integer; unset it or give a number"
                ) from None
        return cls(**values)

    def summary(self) -> str:
        """One line for the server log: every limit and its value."""
        return ", ".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self))


DEFAULT_LIMITS = Limits()
"""The defaults, for library callers of the service functions that pass no limits."""


def env_name(limit: str) -> str:
    """The environment variable of a limit: ``max_pixels`` -> ``GROUNDED_SAM_WEB_MAX_PIXELS``."""
    return ENV_PREFIX + limit.upper()


def check_at_most(
    what: str, value: int | float, limit: int, limit_name: str, hint: str = "ask for less"
) -> None:
    """Refuse ``value`` above ``limit`` with a message naming both, what to do (``hint``) and
    how the operator raises the limit."""
    if value > limit:
        raise LimitExceeded(
            f"{what} is {value:,}, more than this server's limit of {limit:,}; {hint} "
            f"(the operator can raise it with {env_name(limit_name)})"
        )
