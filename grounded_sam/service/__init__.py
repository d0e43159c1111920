"""The web demo's service layer: models loaded lazily and once, per-request functions.

``app.py`` is only the page; everything it computes comes from here, so this package can be
tested (and used by other servers) without Gradio:

- :class:`ModelManager` builds each model on first use, once, under a lock, and shares it
  between requests. Models are never mutated by a request: thresholds travel in a per-request
  shallow copy of the detector (the weights are shared, the numbers are the request's own).
- :func:`detect_segment`, :func:`segment_points` and :func:`everything` take an image and
  options and return :class:`~grounded_sam.Detections`; :func:`result_json`,
  :func:`table_rows` and :func:`export_result` turn them into what the page and the API show.
- :class:`ClickState` is the interactive mode's per-session state (clicked points, a box, the
  previous low-res mask logits) as an immutable value.

Modules: :mod:`~grounded_sam.service.models` (the manager), :mod:`~grounded_sam.service.requests`
(one function per kind of request) and :mod:`~grounded_sam.service.present` (JSON, tables,
downloads). Importing this package imports neither torch nor gradio.
"""

from grounded_sam.service.models import (
    AMG_OPTION_NAMES,
    CLIP,
    DEFAULT_AMG_OPTIONS,
    DETECTOR_KINDS,
    GROUNDING_DINO,
    TINY_AMG_OPTIONS,
    TINY_SAM,
    ModelManager,
    ModelStatus,
)
from grounded_sam.service.present import (
    TABLE_HEADERS,
    export_result,
    result_json,
    status_markdown,
    table_rows,
)
from grounded_sam.service.requests import (
    ClickState,
    detect_segment,
    everything,
    options_from_json,
    segment_points,
)

__all__ = [
    "AMG_OPTION_NAMES",
    "CLIP",
    "DEFAULT_AMG_OPTIONS",
    "DETECTOR_KINDS",
    "GROUNDING_DINO",
    "TABLE_HEADERS",
    "TINY_AMG_OPTIONS",
    "TINY_SAM",
    "ClickState",
    "ModelManager",
    "ModelStatus",
    "detect_segment",
    "everything",
    "export_result",
    "options_from_json",
    "result_json",
    "segment_points",
    "status_markdown",
    "table_rows",
]
