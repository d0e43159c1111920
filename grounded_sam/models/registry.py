"""Known checkpoints: where each file comes from, where it goes, and its sha256.

A plain table, like segment_anything's ``sam_model_registry``: config is code. Nothing here
touches the network; :mod:`grounded_sam.models.download` fetches what this table lists.

The models folder is ``$GROUNDED_SAM_MODELS`` when that environment variable is set, else
``./models`` relative to the current working directory (run the app and the CLI from the
project root, or set the variable). Layout::

    models/sam_vit_h_4b8939.pth                  SAM ViT-H  (also _l_0b3195, _b_01ec64)
    models/sam2.1_hiera_tiny.pt                  SAM 2.1 (also _small, _base_plus, _large)
    models/grounding-dino-tiny/<HF files>        a folder that from_pretrained() reads
    models/grounding-dino-base/<HF files>
    models/groundingdino_swint_ogc.pth           original IDEA-Research files (also swinb_cogcoor)
    models/bert-base-uncased-tokenizer/<files>   the tokenizer the original files need
    models/clip-vit-b-32-laion2b/open_clip_model.safetensors

Checksums: the SAM files' sha256 are the ones published with the official checkpoints; the
Hugging Face files are pinned to one repository revision and their sha256 are the git-LFS
object ids (weights) or the hashes of the files at that revision. A file with ``sha256=None``
downloads unverified, and the downloader prints the hash it computed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

ENV_VAR = "GROUNDED_SAM_MODELS"
KINDS = ("sam", "grounding_dino", "clip", "tokenizer")


@dataclass(frozen=True)
class ModelFile:
    """One file of a model.

    Attributes:
        url: where to fetch it (https).
        path: where it goes, relative to the models folder, POSIX separators.
        sha256: lower-case hex digest, or None when unknown (downloaded unverified).
        size: bytes, or None when unknown.
    """

    url: str
    path: str
    sha256: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class ModelEntry:
    """A known model: its files and how to build it.

    Attributes:
        name: registry key, e.g. ``"sam_vit_b"`` (``grounded-sam download NAME``).
        kind: ``"sam"``, ``"grounding_dino"`` or ``"clip"``.
        files: the files to fetch.
        path: what :func:`model_path` returns, relative to the models folder: the checkpoint
            file (SAM, CLIP) or the folder to pass to ``from_pretrained`` (Grounding DINO).
        builder: how the package builds it, e.g. ``{"model_type": "vit_b"}`` for
            ``SamSegmenter.from_checkpoint`` (``"family": "sam2"`` for SAM 2.1's
            ``Sam2Segmenter``; see ``grounded_sam.segmenters.factory``); ``{"model_name": "ViT-B-32", ...}`` for open_clip.
        description: one line for ``grounded-sam info``.
        source: the page that documents the checkpoint.
        license: the checkpoint's license.
    """

    name: str
    kind: str
    files: tuple[ModelFile, ...]
    path: str
    builder: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    source: str = ""
    license: str = ""

    @property
    def size(self) -> int | None:
        """Total bytes, or None when a file's size is unknown."""
        sizes = [f.size for f in self.files]
        return None if any(s is None for s in sizes) else sum(sizes)  # type: ignore[misc]


# ---------------------------------------------------------------------------- SAM
_SAM_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
_SAM = {
    # model_type: (file name, sha256, size, description)
    "vit_h": (
        "sam_vit_h_4b8939.pth",
        "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
        2_564_550_879,
        "SAM ViT-H (636M parameters): the best masks, the slowest",
    ),
    "vit_l": (
        "sam_vit_l_0b3195.pth",
        "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
        1_249_524_607,
        "SAM ViT-L (308M parameters): nearly ViT-H quality",
    ),
    "vit_b": (
        "sam_vit_b_01ec64.pth",
        "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
        375_042_383,
        "SAM ViT-B (91M parameters): the fastest, fine on a CPU",
    ),
}


def _sam_entry(model_type: str) -> ModelEntry:
    file_name, sha, size, description = _SAM[model_type]
    return ModelEntry(
        name=f"sam_{model_type}",
        kind="sam",
        files=(ModelFile(_SAM_URL + file_name, file_name, sha, size),),
        path=file_name,
        builder={"model_type": model_type},
        description=description,
        source="https://github.com/facebookresearch/segment-anything#model-checkpoints",
        license="Apache-2.0",
    )


# ---------------------------------------------------------------------------- SAM 2.1
# Meta's release of 2024-09-28 (sam2's checkpoints/download_ckpts.sh). Neither a sha256 nor an
# exact byte size is published with these files, and none could be confirmed from a primary
# source: they download unverified and the downloader prints the hash it computed.
_SAM2_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"
_SAM2 = {
    # model_type: (file name, description)
    "sam2.1_hiera_tiny": (
        "sam2.1_hiera_tiny.pt",
        "SAM 2.1 Hiera-T (39M parameters): the smallest and fastest SAM 2.1",
    ),
    "sam2.1_hiera_small": ("sam2.1_hiera_small.pt", "SAM 2.1 Hiera-S (46M parameters)"),
    "sam2.1_hiera_base_plus": (
        "sam2.1_hiera_base_plus.pt",
        "SAM 2.1 Hiera-B+ (81M parameters)",
    ),
    "sam2.1_hiera_large": (
        "sam2.1_hiera_large.pt",
        "SAM 2.1 Hiera-L (224M parameters): the best SAM 2.1 masks, the slowest",
    ),
}


def _sam2_entry(model_type: str) -> ModelEntry:
    file_name, description = _SAM2[model_type]
    return ModelEntry(
        name=model_type,
        kind="sam",
        files=(ModelFile(_SAM2_URL + file_name, file_name, None, None),),
        path=file_name,
        builder={"model_type": model_type, "family": "sam2"},
        description=description,
        source="https://github.com/facebookresearch/sam2#model-description",
        license="Apache-2.0",
    )


# ---------------------------------------------------------------------------- Hugging Face
def _hf(repo: str, revision: str, folder: str, files: list[tuple[str, str, int]]) -> tuple:
    base = f"https://huggingface.co/{repo}/resolve/{revision}/"
    return tuple(ModelFile(base + name, f"{folder}/{name}", sha, size) for name, sha, size in files)


# Files shared by both Grounding DINO repositories (BERT-base-uncased tokenizer, processor).
_GDINO_COMMON = [
    ("preprocessor_config.json", "8454179ba95e2ad22947835aad7b45862a601fc0055ab88bf1ee70892d3aea60", 457),
    ("special_tokens_map.json", "b6d346be366a7d1d48332dbc9fdf3bf8960b5d879522b7799ddba59e76237ee3", 125),
    ("tokenizer.json", "d241a60d5e8f04cc1b2b3e9ef7a4921b27bf526d9f6050ab90f9267a1f9e5c66", 711_396),
    ("tokenizer_config.json", "d40ab645b68211910b9170d22433d43186a6ec8ee6fd10ba170524b25bf4fb56", 1_237),
    ("vocab.txt", "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3", 231_508),
]  # fmt: skip

_GDINO_TINY_REVISION = "a2bb814dd30d776dcf7e30523b00659f4f141c71"

_GDINO_TINY = ModelEntry(
    name="grounding_dino_tiny",
    kind="grounding_dino",
    files=_hf(
        "IDEA-Research/grounding-dino-tiny",
        _GDINO_TINY_REVISION,
        "grounding-dino-tiny",
        [
            (
                "config.json",
                "eec82c5ab66e16df12a9a212e68ac011779927c2536cf9078658e35d85f0c67a",
                1_644,
            ),
            (
                "added_tokens.json",
                "909e96cb32d92ce728a01bc99850cbba26196d74115c17ebeb019275412588f2",
                82,
            ),
            *_GDINO_COMMON,
            (
                "model.safetensors",
                "1a2412ef99bd74bcd3c2a246fa1e48581f8889a1300c9051974741314fc042f3",
                689_359_096,
            ),
        ],
    ),
    path="grounding-dino-tiny",
    builder={"repo_id": "IDEA-Research/grounding-dino-tiny"},
    description="Grounding DINO Swin-T (172M parameters), transformers format",
    source="https://huggingface.co/IDEA-Research/grounding-dino-tiny",
    license="Apache-2.0",
)

_GDINO_BASE = ModelEntry(
    name="grounding_dino_base",
    kind="grounding_dino",
    files=_hf(
        "IDEA-Research/grounding-dino-base",
        "12bdfa3120f3e7ec7b434d90674b3396eccf88eb",
        "grounding-dino-base",
        [
            (
                "config.json",
                "eda416dae6f49419ff831b1c190ec430a060b19aae688dbaf2425a075b650608",
                1_737,
            ),
            *_GDINO_COMMON,
            (
                "model.safetensors",
                "5548f844c928c4b6f411fa8cbcc2bfa8dbbba437cb1d513975519f93c2a9ed21",
                933_400_872,
            ),
        ],
    ),
    path="grounding-dino-base",
    builder={"repo_id": "IDEA-Research/grounding-dino-base"},
    description="Grounding DINO Swin-B (233M parameters), transformers format",
    source="https://huggingface.co/IDEA-Research/grounding-dino-base",
    license="Apache-2.0",
)

# ---------------------------------------------------------------------------- original Grounding DINO
# bert-base-uncased's tokenizer, which the original .pth files need and do not hold: the same
# files (and hashes) as in the transformers-format repository above.
_BERT_TOKENIZER = ModelEntry(
    name="bert_base_uncased_tokenizer",
    kind="tokenizer",
    files=_hf(
        "IDEA-Research/grounding-dino-tiny",
        _GDINO_TINY_REVISION,
        "bert-base-uncased-tokenizer",
        [f for f in _GDINO_COMMON if f[0] != "preprocessor_config.json"],
    ),
    path="bert-base-uncased-tokenizer",
    description="bert-base-uncased tokenizer (vocab.txt …) for the original Grounding DINO files",
    source="https://huggingface.co/IDEA-Research/grounding-dino-tiny",
    license="Apache-2.0",
)

_GDINO_RELEASES = "https://github.com/IDEA-Research/GroundingDINO/releases/download/"


def _original_gdino(
    name: str, tag: str, file_name: str, sha: str, size: int, what: str
) -> ModelEntry:
    """An official ``.pth`` release of IDEA-Research's code, plus the tokenizer it needs;
    loaded by ``GroundingDinoDetector.from_original`` (or from_pretrained on the file)."""
    return ModelEntry(
        name=name,
        kind="grounding_dino",
        files=(ModelFile(f"{_GDINO_RELEASES}{tag}/{file_name}", file_name, sha, size),)
        + _BERT_TOKENIZER.files,
        path=file_name,
        builder={"format": "original", "tokenizer": _BERT_TOKENIZER.name},
        description=what,
        source="https://github.com/IDEA-Research/GroundingDINO#luggage-checkpoints",
        license="Apache-2.0",
    )


# sha256 and sizes: the release files as published (v0.1.0-alpha / v0.1.0-alpha2), the same
# values reported by several independent projects that pin them.
_GDINO_SWINT_OGC = _original_gdino(
    "groundingdino_swint_ogc",
    "v0.1.0-alpha",
    "groundingdino_swint_ogc.pth",
    "3b3ca2563c77c69f651d7bd133e97139c186df06231157a64c507099c52bc799",
    693_997_677,
    "Grounding DINO Swin-T OGC, the original IDEA-Research .pth (converted on load)",
)
_GDINO_SWINB_COGCOOR = _original_gdino(
    "groundingdino_swinb_cogcoor",
    "v0.1.0-alpha2",
    "groundingdino_swinb_cogcoor.pth",
    "46270f7a822e6906b655b729c90613e48929d0f2bb8b9b76fd10a856f3ac6ab7",
    938_057_991,
    "Grounding DINO Swin-B, the original IDEA-Research .pth (converted on load)",
)

_CLIP_B32 = ModelEntry(
    name="clip_vit_b32",
    kind="clip",
    files=_hf(
        "laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
        "1a25a446712ba5ee05982a381eed697ef9b435cf",
        "clip-vit-b-32-laion2b",
        [
            (
                "open_clip_model.safetensors",
                "ac4f8c4b88af6d963118cbf40ad93176d092abbedfcb752601ae1866352656e6",
                605_143_316,
            ),
        ],
    ),
    path="clip-vit-b-32-laion2b/open_clip_model.safetensors",
    builder={"model_name": "ViT-B-32", "pretrained_tag": "laion2b_s34b_b79k"},
    description="open_clip ViT-B-32 trained on LAION-2B (the ClipMaskDetector default)",
    source="https://huggingface.co/laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
    license="MIT",
)

REGISTRY: Mapping[str, ModelEntry] = MappingProxyType(
    {
        e.name: e
        for e in (
            _sam_entry("vit_h"),
            _sam_entry("vit_l"),
            _sam_entry("vit_b"),
            *(_sam2_entry(t) for t in _SAM2),
            _GDINO_TINY,
            _GDINO_BASE,
            _GDINO_SWINT_OGC,
            _GDINO_SWINB_COGCOOR,
            _BERT_TOKENIZER,
            _CLIP_B32,
        )
    }
)

# The one list of SAM model types (registry names sam_<type>), smallest first: what
# segment_anything builds, the CLI's --sam and the app's dropdown offer.
SAM_MODEL_TYPES: tuple[str, ...] = tuple(reversed(_SAM))
# The SAM models the CLI's --sam and the app's dropdown offer: SAM's model types and the
# SAM 2.1 registry names.
SAM_CHOICES: tuple[str, ...] = (*SAM_MODEL_TYPES, *_SAM2)

# What the app and the CLI use when the user names no model, per kind.
DEFAULTS: Mapping[str, str] = MappingProxyType(
    {"sam": "sam_vit_b", "grounding_dino": "grounding_dino_tiny", "clip": "clip_vit_b32"}
)


# ---------------------------------------------------------------------------- lookups
def get_entry(name: str | ModelEntry) -> ModelEntry:
    """The registry entry called ``name`` (``-`` and ``_`` and case are interchangeable).

    A :class:`ModelEntry` is returned as is, so every function here also takes entries that
    are not in the registry (tests, private mirrors); so is a Grounding DINO model on disk
    (see :func:`local_entry`).

    Raises:
        KeyError: an unknown name; the message lists the known ones.
    """
    if isinstance(name, ModelEntry):
        return name
    key = str(name).strip().lower().replace("-", "_")
    if key not in REGISTRY and (local := local_entry(name)) is not None:
        return local
    if key not in REGISTRY:
        raise KeyError(f"unknown model {name!r}; known models: {', '.join(REGISTRY)}")
    return REGISTRY[key]


# Suffixes of the original Grounding DINO code's checkpoints.
ORIGINAL_SUFFIXES = (".pth", ".pt")


def local_entry(path: str | Path) -> ModelEntry | None:
    """An ad-hoc Grounding DINO entry for a model on disk, or None when ``path`` is none.

    ``path`` is a folder ``from_pretrained`` reads (it holds ``config.json``; e.g. written
    by ``grounded-sam convert``) or an original ``.pth``/``.pt`` file. The entry lists no
    files (nothing to fetch); its ``path`` is absolute, so :func:`model_path` returns it
    whatever the models folder.
    """
    p = Path(path).expanduser()
    if p.is_dir() and (p / "config.json").is_file():
        builder: dict[str, Any] = {}
    elif p.is_file() and p.suffix in ORIGINAL_SUFFIXES:
        builder = {"format": "original"}
    else:
        return None
    return ModelEntry(
        name=str(path),
        kind="grounding_dino",
        files=(),
        path=str(p.absolute()),
        builder=builder,
        description=f"Grounding DINO from {p}",
    )


def names(kind: str | None = None) -> list[str]:
    """Registry names, all or of one ``kind``."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return [n for n, e in REGISTRY.items() if kind is None or e.kind == kind]


def models_dir(path: str | Path | None = None) -> Path:
    """The models folder: ``path`` if given, else ``$GROUNDED_SAM_MODELS``, else ``./models``
    in the current working directory. Returned absolute; not created."""
    return _resolve(path)


def _resolve(path: str | Path | None) -> Path:
    if path is None:
        path = os.environ.get(ENV_VAR) or "models"
    return Path(path).expanduser().absolute()


def file_paths(name: str | ModelEntry, models_dir: str | Path | None = None) -> list[Path]:
    """Absolute paths of all files of a model, in registry order."""
    root = _resolve(models_dir)
    return [root / f.path for f in get_entry(name).files]


def model_path(name: str | ModelEntry, models_dir: str | Path | None = None) -> Path:
    """What a builder loads: the checkpoint file (SAM, CLIP) or the ``from_pretrained`` folder
    (Grounding DINO). The path is returned whether or not the files exist."""
    return _resolve(models_dir) / get_entry(name).path


def missing_files(name: str | ModelEntry, models_dir: str | Path | None = None) -> list[Path]:
    """Files of a model that are absent, or whose size differs from the registry's (a
    truncated copy). Checksums are not computed here (that reads gigabytes); see
    :func:`grounded_sam.models.download.verify`."""
    entry = get_entry(name)
    out = []
    for f, path in zip(entry.files, file_paths(entry, models_dir), strict=True):
        if not path.is_file() or (f.size is not None and path.stat().st_size != f.size):
            out.append(path)
    return out


def is_present(name: str | ModelEntry, models_dir: str | Path | None = None) -> bool:
    """True when every file of the model is on disk with the expected size."""
    return not missing_files(name, models_dir)


def model_state(name: str | ModelEntry, models_dir: str | Path | None = None) -> str:
    """``"present"`` (every file there with the registry's size), ``"corrupt"`` (a file is
    there with another size: truncated or replaced) or ``"missing"``.

    Sizes only, no checksums (those read gigabytes): ``grounded-sam download NAME`` checks
    the sha256 of the files in place.
    """
    entry = get_entry(name)
    state = "present"
    for f, path in zip(entry.files, file_paths(entry, models_dir), strict=True):
        if path.exists() and not path.is_file():
            return "corrupt"
        if path.is_file() and f.size is not None and path.stat().st_size != f.size:
            return "corrupt"
        if not path.is_file():
            state = "missing"
    return state
