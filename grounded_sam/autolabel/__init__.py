"""Dataset auto-labelling: ``auto_label`` runs a pipeline over a folder; resumable; a bad image
is skipped and listed; big datasets can be split into shards labelled on several machines.

Layout of ``out_dir``::

    .state/config.json           what produces the results (prompt, classes, pipeline settings)
    .state/<image key>.json      one file per image, written atomically as soon as it finishes
    .state/shards/shard-K-of-N.json   the images of each shard (an unsharded run: 0 of 1)
    annotations.coco.json, …     the exports, rebuilt from the per-image files at the end
    masks/, yolo/labels/         per-image files, named by :mod:`~.names` (safe, unique)
    yolo/images/, yolo/data.yaml the images (linked or copied) and the dataset file: Ultralytics
                                 trains on ``yolo/`` as written
    labelstudio/                 tasks.json (pre-annotations), config.xml, README.txt
    errors.jsonl                 images that failed (unreadable, refused by a model, an export
                                 error, a symlink out of the input folder), one
                                 {"file_name", "path", "reason"}
    summary.json                 images done and skipped, detections per class, review count,
                                 how many detections each export holds (``exported``)
    summary.shard-K-of-N.json, errors.shard-K-of-N.jsonl    a shard's own (shards only)

The exports are built from the per-image files in sorted file-name order, with ids taken from
that order, so a run interrupted at any point (Ctrl-C, ``kill -9``) and restarted with the same
arguments skips the finished images and writes the same files as a run never interrupted; and
``merge_shards`` writes, from the results of N shards, the same files as one machine would.

Modules: :mod:`~.sources` (listing the inputs), :mod:`~.state` (per-image records, the
configuration check), :mod:`~.prefetch` (decoding ahead), :mod:`~.outputs` (the final files
and the summary), :mod:`~.run` (the loop), :mod:`~.shards` (the split and the manifests),
:mod:`~.merge` (the exports of a sharded run), :mod:`~.names` (output file names). docs/DISTRIBUTED.md shows how to run shards.
"""

from grounded_sam.autolabel.merge import (
    IncompleteShardsError,
    MergeError,
    ShardProgress,
    merge_shards,
)
from grounded_sam.autolabel.outputs import EXPORT_PATHS, FORMATS, LabelSummary
from grounded_sam.autolabel.run import auto_label
from grounded_sam.autolabel.shards import Shard, shard_of
from grounded_sam.autolabel.sources import IMAGE_EXTENSIONS, ImageItem, list_images
from grounded_sam.autolabel.state import STATE_DIR, STATE_VERSION, ConfigMismatchError

__all__ = [
    "EXPORT_PATHS",
    "FORMATS",
    "IMAGE_EXTENSIONS",
    "STATE_DIR",
    "STATE_VERSION",
    "ConfigMismatchError",
    "ImageItem",
    "IncompleteShardsError",
    "LabelSummary",
    "MergeError",
    "Shard",
    "ShardProgress",
    "auto_label",
    "list_images",
    "merge_shards",
    "shard_of",
]
