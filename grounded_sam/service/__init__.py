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

- :func:`read_upload` decodes an uploaded file with :func:`grounded_sam.load_image` after a
  size check and a format allow-list judged from the content; :class:`Limits` bounds the work
  of one request (upload bytes, pixels, grid size, points, boxes, classes), checked before any
  model runs.

Modules: :mod:`~grounded_sam.service.models` (the manager), :mod:`~grounded_sam.service.requests`
(one function per kind of request), :mod:`~grounded_sam.service.present` (JSON, tables,
downloads), :mod:`~grounded_sam.service.limits`, :mod:`~grounded_sam.service.options` (checks of
a request's options) and :mod:`~grounded_sam.service.uploads`. Importing this package imports
neither torch nor gradio.
"""

from grounded_sam.service.limits import DEFAULT_LIMITS, LimitExceeded, Limits
from grounded_sam.service.models import (
    CLIP,
    DEFAULT_AMG_OPTIONS,
    DETECTOR_KINDS,
    GROUNDING_DINO,
    TINY_AMG_OPTIONS,
    TINY_SAM,
    ModelManager,
    ModelStatus,
)
from grounded_sam.service.options import AMG_OPTION_NAMES, check_amg_options
from grounded_sam.service.present import (
    TABLE_HEADERS,
    export_result,
    result_json,
    status_markdown,
    table_rows,
)
from grounded_sam.service.refusals import is_refusal, one_line
from grounded_sam.service.requests import (
    ClickState,
    detect_segment,
    everything,
    segment_points,
)
from grounded_sam.service.uploads import ALLOWED_FORMATS, read_upload, upload_name

__all__ = [
    "ALLOWED_FORMATS",
    "AMG_OPTION_NAMES",
    "CLIP",
    "DEFAULT_AMG_OPTIONS",
    "DEFAULT_LIMITS",
    "DETECTOR_KINDS",
    "GROUNDING_DINO",
    "LimitExceeded",
    "Limits",
    "TABLE_HEADERS",
    "TINY_AMG_OPTIONS",
    "TINY_SAM",
    "ClickState",
    "ModelManager",
    "ModelStatus",
    "detect_segment",
    "everything",
    "export_result",
    "is_refusal",
    "one_line",
    "check_amg_options",
    "read_upload",
    "result_json",
    "segment_points",
    "status_markdown",
    "upload_name",
    "table_rows",
]
