"""Text to boxes with Grounding DINO (transformers' ``GroundingDinoForObjectDetection``).

``GroundingDinoDetector(model, processor).detect(image, "cat . traffic light")`` returns
:class:`~grounded_sam.types.Detections` in pixels of the original image, each with a score,
a clean phrase and a class id into the prompt's classes (see
:mod:`grounded_sam.detectors.phrases` for how tokens become labels). Prompts longer than the
model's 256-token text limit are split into chunks of whole classes
(:mod:`grounded_sam.detectors.vocab_chunks`).

Models load only from local files: a directory written by ``save_pretrained`` or by
``grounded-sam download``, or a Hugging Face model id already in the local cache. Nothing is
ever downloaded here, and the original ``groundingdino-py`` package is not needed.
"""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from grounded_sam.detectors.options import GroundingDinoOptions
from grounded_sam.detectors.phrases import Prompt, PromptTokens, build_phrases, score_queries
from grounded_sam.detectors.vocab_chunks import count_class_tokens, plan_chunks, reuse_backbone
from grounded_sam.errors import CheckpointError, MissingCheckpointError, PromptError
from grounded_sam.geometry import clip_xyxy, cxcywh_norm_to_xyxy
from grounded_sam.options import Configurable
from grounded_sam.precision import UNSET, Precision, from_legacy
from grounded_sam.types import Detections

# Files from_pretrained hands to from_original: the original code's checkpoints.
_ORIGINAL_SUFFIXES = (".pth", ".pt")

# What a model directory must hold; each entry is satisfied by any one of its files.
_REQUIRED_FILES: dict[str, tuple[str, ...]] = {
    "model config": ("config.json",),
    "weights": (
        "model.safetensors",
        "model.safetensors.index.json",
        "pytorch_model.bin",
        "pytorch_model.bin.index.json",
    ),
    "image processor config": ("preprocessor_config.json", "processor_config.json"),
    "tokenizer": ("tokenizer.json", "vocab.txt"),
}


def _registry_entry(source: str) -> Any:
    """The Grounding DINO registry entry named ``source`` or holding hub id ``source``."""
    from grounded_sam.models.registry import get_entry, names

    try:
        entry = get_entry(source)
    except KeyError:
        entry = None
    if entry is not None:
        return entry if entry.kind == "grounding_dino" else None
    for name in names("grounding_dino"):
        entry = get_entry(name)
        if entry.builder.get("repo_id") == source:
            return entry
    return None


def _download_command(entry: Any = None) -> str:
    """``grounded-sam download NAME`` for an entry, an entry name, or the default model."""
    from grounded_sam.models.registry import DEFAULTS

    name = getattr(entry, "name", entry) or DEFAULTS["grounding_dino"]
    return f"grounded-sam download {name}"


def _looks_like_path(source: str) -> bool:
    """True for strings that cannot be a Hugging Face id ``owner/name``."""
    return (
        source.startswith(("/", ".", "~"))
        or "\\" in source
        or source.count("/") > 1
        or Path(source).suffix in {".pth", ".pt", ".bin", ".safetensors"}
    )


def missing_model_files(directory: str | Path) -> list[str]:
    """What a Grounding DINO directory lacks, e.g. ``["weights (model.safetensors or ...)"]``."""
    directory = Path(directory)
    missing = []
    for what, names in _REQUIRED_FILES.items():
        if not any((directory / n).is_file() for n in names):
            missing.append(f"{what} ({' or '.join(names)})")
    return missing


class GroundingDinoDetector(Configurable):
    """Open-vocabulary detection: an image and a text prompt in, :class:`Detections` out.

    Args:
        model: a ``transformers.GroundingDinoForObjectDetection`` (any size; eval mode is set).
        processor: its ``GroundingDinoProcessor`` (an image processor and a *fast* BERT
            tokenizer; character offsets are needed to map tokens to classes).
        box_threshold: keep queries whose score is above this, in [0, 1].
        text_threshold: a word enters a phrase when one of its tokens' probability is above
            this, in [0, 1] (the best token's word is always in).
        nms: ``None`` (keep every query above ``box_threshold``, as the model was trained),
            ``"class"`` (non-maximum suppression among boxes of the same class id) or
            ``"agnostic"`` (among all boxes).
        nms_iou: IoU above which NMS suppresses the lower-scoring box, in [0, 1].
        top_k: keep at most this many detections (best scores), after NMS; ``None``: all.
        class_restricted: how a query gets its score and class.

            ``False`` (default): score = the query's best token probability over the whole
            prompt (exactly transformers' ``post_process_grounded_object_detection`` score),
            class = the class whose tokens hold that best token, -1 when it is ``[CLS]``,
            ``[SEP]`` or a ``"."``; the phrase is made of words of that one class.

            ``True``: each class's score is the mean probability of its tokens; the label is
            the best class and the score its mean. Every detection gets a class (never -1)
            and the label can never mix two classes. The trade-off: scores are lower and no
            longer the model's native scores, so ``box_threshold`` needs re-tuning (a mean
            is at most the max); names of several tokens are penalised when the model lights
            up only their head word ("traffic light" where only "light" fires), which biases
            ties towards one-token names; and the "none of these" signal of a query that
            prefers a separator token is lost.
        device: move the model there (e.g. ``"cuda"``); ``None`` leaves it where it is.
        dtype: cast the model (e.g. ``torch.bfloat16``); ``None`` leaves it as it is.
        precision: ``"exact"`` (default), ``"fast"``, ``"fast-fp32"``, ``"fast-bf16"`` …
            (:mod:`grounded_sam.precision`). The fast ones run the model through
            :func:`~grounded_sam.detectors.fast_grounding_dino.optimize_grounding_dino`
            (deformable attention without grid_sample; autocast with float32 box heads and
            logits in the setting's dtype), applied in place on the first ``detect``/
            ``forward``; ``"autocast-*"`` runs this model exact. ``fast=`` / ``fast_dtype=``
            are the deprecated spellings.

    Options (thresholds, ``nms``, ``top_k`` …) are ``self.options``, a frozen
    :class:`~grounded_sam.detectors.options.GroundingDinoOptions` checked by one function;
    :meth:`with_options` gives a copy for one request that shares the model, and
    :meth:`config` the JSON-able settings a resume fingerprint is made of.

    Thread safety: ``detect`` keeps no per-request state on the detector; concurrent calls
    on one detector are safe as far as the model's forward is (PyTorch inference is).
    """

    def __init__(
        self,
        model: Any,
        processor: Any,
        box_threshold: float = 0.35,
        text_threshold: float = 0.25,
        *,
        nms: str | None = None,
        nms_iou: float = 0.5,
        top_k: int | None = None,
        class_restricted: bool = False,
        device: Any = None,
        dtype: Any = None,
        precision: str | Precision | None = None,
        fast: Any = UNSET,
        fast_dtype: Any = UNSET,
    ):
        self.options = GroundingDinoOptions(
            box_threshold=box_threshold,
            text_threshold=text_threshold,
            nms=nms,
            nms_iou=nms_iou,
            top_k=top_k,
            class_restricted=class_restricted,
        )
        self.precision = from_legacy(
            precision, owner="GroundingDinoDetector", fast=fast, dtype=fast_dtype
        )
        if self.fast:
            from grounded_sam.runtime import warn_if_bf16_is_emulated

            warn_if_bf16_is_emulated(self.fast_dtype)
        if device is not None or dtype is not None:
            model = model.to(device=device, dtype=dtype)
        self.model = model.eval()
        self.processor = processor
        tokenizer = getattr(processor, "tokenizer", None)
        if tokenizer is None or not getattr(tokenizer, "is_fast", False):
            raise TypeError(
                "the processor needs a fast tokenizer (it gives the character offsets that "
                "map tokens to classes); build it with BertTokenizerFast / AutoTokenizer"
            )
        self.max_text_len = int(getattr(model.config, "max_text_len", 256))

    @property
    def fast(self) -> bool:
        """Whether the optimised path runs (``precision`` ``"fast*"``)."""
        return self.precision.fast

    @property
    def fast_dtype(self) -> str | None:
        """The fast path's dtype (``"bf16"`` …; None: the hardware's fastest)."""
        return self.precision.dtype if self.precision.fast else None

    def config(self) -> dict[str, Any]:
        """The settings that change this detector's output, JSON-able (a resume fingerprint's
        part): the options, the precision (``fast``, ``fast_dtype``), the model's text length
        and parameter count. The same keys as the settings fingerprinted before ``config()``
        existed, so output folders labelled then still resume."""
        return {
            **dataclasses.asdict(self.options),
            "fast": self.fast,
            "fast_dtype": self.fast_dtype,
            "max_text_len": self.max_text_len,
            "params": sum(int(p.numel()) for p in self.model.parameters()),
        }

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        name_or_dir: str | Path,
        device: Any = "cpu",
        *,
        models_dir: str | Path | None = None,
        **kwargs: Any,
    ) -> GroundingDinoDetector:
        """Load a model and processor from local files only; never downloads.

        Args:
            name_or_dir: one of
                - a directory written by ``save_pretrained`` or ``grounded-sam convert``;
                - an original IDEA-Research ``.pth`` file (see :meth:`from_original`);
                - a registry name (``"grounding_dino_tiny"``, ``"grounding-dino-base"``): its
                  folder in the models folder, where ``grounded-sam download`` puts it;
                - a Hugging Face id (``"IDEA-Research/grounding-dino-tiny"``): the registry's
                  folder for it if present, else the local Hugging Face cache.
            device: where the model runs.
            models_dir: the models folder (default ``$GROUNDED_SAM_MODELS`` or ``./models``,
                see :mod:`grounded_sam.models.registry`).
            kwargs: passed to the constructor (thresholds, ``nms``, ``dtype``, ...).

        Raises:
            MissingCheckpointError: the directory lacks files (they are listed), or the model
                has no local copy; the message names the ``grounded-sam download`` command.
        """
        from grounded_sam.models.registry import model_path

        source = str(name_or_dir)
        path = Path(source).expanduser()
        if path.is_dir():
            return cls._load(path, device, None, kwargs)
        if path.is_file() and path.suffix in _ORIGINAL_SUFFIXES:
            return cls.from_original(path, device=device, models_dir=models_dir, **kwargs)
        if path.exists() or _looks_like_path(source):
            raise MissingCheckpointError(
                path,
                None,
                hint=(
                    f"{path} is not a Grounding DINO directory "
                    f"({'a file' if path.exists() else 'no such directory'}); pass a directory "
                    f"written by save_pretrained, or fetch one with `{_download_command()}`"
                ),
            )
        entry = _registry_entry(source)
        if entry is not None and entry.builder.get("format") == "original":
            return cls.from_original(
                model_path(entry, models_dir), device=device, models_dir=models_dir, **kwargs
            )
        if entry is not None:
            folder = model_path(entry, models_dir)
            if folder.is_dir():
                return cls._load(folder, device, entry.name, kwargs)
            source = entry.builder.get("repo_id", source)
        try:
            return cls._load(source, device, entry.name if entry else None, kwargs)
        except MissingCheckpointError as err:
            where = "not "
            if entry is not None:
                where = f"neither in {model_path(entry, models_dir)} nor "
            raise MissingCheckpointError(
                source,
                err.name,
                hint=(
                    f"no local copy of Grounding DINO model {source!r}: {where}in the Hugging "
                    "Face cache; nothing is downloaded at run time. Fetch it with "
                    f"`{_download_command(entry)}` or pass a directory written by "
                    "save_pretrained"
                ),
            ) from err.__cause__

    @classmethod
    def from_original(
        cls,
        checkpoint: str | Path,
        config: Any = None,
        text_encoder: str | Path | None = None,
        *,
        device: Any = "cpu",
        models_dir: str | Path | None = None,
        **kwargs: Any,
    ) -> GroundingDinoDetector:
        """Load an original IDEA-Research checkpoint (``groundingdino_swint_ogc.pth``,
        ``groundingdino_swinb_cogcoor.pth``) onto transformers' model; never downloads.

        The weights are renamed and split onto ``GroundingDinoForObjectDetection`` and loaded
        strictly (:mod:`grounded_sam.models.grounding_dino_original`); on the same weights it
        computes what the original code computes. ``grounded-sam convert grounding-dino`` saves
        the result as a folder :meth:`from_pretrained` reads without converting again.

        Args:
            checkpoint: the ``.pth`` file (read with ``weights_only=True``).
            config: ``None`` (the architecture is read from the tensors' shapes: Swin-T OGC,
                Swin-B …), the original config file (``GroundingDINO_SwinT_OGC.py``; read,
                not executed), a mapping of its values, or a ``GroundingDinoConfig``.
            text_encoder: where bert-base-uncased's ``vocab.txt``/``tokenizer.json`` are: a
                folder or a registry name; ``None``: ``grounded-sam download
                bert_base_uncased_tokenizer``'s folder, or ``bert-base-uncased-tokenizer/``
                beside the checkpoint (see :mod:`grounded_sam.models.grounding_dino_text`).
            device: where the model runs.
            models_dir: the models folder (default ``$GROUNDED_SAM_MODELS`` or ``./models``).
            kwargs: passed to the constructor (thresholds, ``nms``, ``dtype``, ...).

        Raises:
            MissingCheckpointError: the checkpoint or the tokenizer files are missing (the
                message names them and the ``grounded-sam download`` command).
            CheckpointError: a truncated or foreign file, or keys that do not fit (listed).
        """
        from grounded_sam.models.grounding_dino_original import load_original
        from grounded_sam.models.grounding_dino_text import (
            load_tokenizer,
            original_processor,
            tokenizer_folder,
        )

        folder = tokenizer_folder(text_encoder, checkpoint=checkpoint, models_dir=models_dir)
        model = load_original(Path(checkpoint).expanduser(), config)
        tokenizer = load_tokenizer(folder, vocab_rows=model.config.text_config.vocab_size)
        return cls(model, original_processor(tokenizer), device=device, **kwargs)

    @classmethod
    def _load(
        cls, source: str | Path, device: Any, name: str | None, kwargs: dict[str, Any]
    ) -> GroundingDinoDetector:
        """Load a local directory (checked for completeness) or a cached hub id, offline."""
        from transformers import GroundingDinoForObjectDetection, GroundingDinoProcessor

        if isinstance(source, Path):
            missing = missing_model_files(source)
            if missing:
                raise MissingCheckpointError(
                    source,
                    name,
                    hint=(
                        f"the Grounding DINO directory {source} lacks: {'; '.join(missing)}. "
                        "Save a model there with model.save_pretrained(dir) and "
                        "processor.save_pretrained(dir), or fetch one with "
                        f"`{_download_command(name)}`"
                    ),
                )
        try:
            processor = GroundingDinoProcessor.from_pretrained(str(source), local_files_only=True)
            model = GroundingDinoForObjectDetection.from_pretrained(
                str(source), local_files_only=True
            )
        except OSError as err:
            raise MissingCheckpointError(source, name) from err
        except (pickle.UnpicklingError, EOFError, RuntimeError, ValueError) as err:
            # a pickle that would run code (refused by weights_only loading), a damaged or
            # foreign weights file
            again = f"; fetch it again with `{_download_command(name)}`" if name else ""
            raise CheckpointError(
                f"cannot load the Grounding DINO weights in {source}: {type(err).__name__}: "
                f"{str(err)[:500]}{again}"
            ) from err
        return cls(model, processor, device=device, **kwargs)

    # ------------------------------------------------------------------ stages
    def prompt_chunks(self, prompt: str | Sequence[str]) -> list[Prompt]:
        """The prompt as one or more :class:`Prompt` s, each within the model's text limit.

        All share the same ``classes``; their class ids index that full list.
        """
        full = Prompt.from_classes(prompt)
        tokenizer = self.processor.tokenizer
        ids = full.unique_class_ids()
        counts = count_class_tokens(tokenizer, [full.classes[i] for i in ids])
        chunks = plan_chunks(ids, counts, self.max_text_len)
        if len(chunks) == 1:
            return [full]
        return [Prompt.from_classes(full.classes, include=chunk) for chunk in chunks]

    def preprocess_image(self, image: Any) -> tuple[dict[str, Any], tuple[int, int]]:
        """``(pixel inputs, (H, W))``: the image processor's tensors on the model's device.

        Thin strips are padded at the bottom/right first
        (:func:`~grounded_sam.detectors.dino_input.pad_for_detector`); the model's normalised
        boxes then refer to that frame, which :meth:`postprocess` derives from (H, W).
        """
        from grounded_sam.detectors.dino_input import pad_for_detector
        from grounded_sam.image import as_rgb

        rgb = as_rgb(image)
        framed = pad_for_detector(rgb, self.processor.image_processor)
        # channels_last: a 3-pixel-tall image would otherwise be guessed channels-first
        inputs = self.processor.image_processor(
            images=framed, return_tensors="pt", input_data_format="channels_last"
        )
        param = next(self.model.parameters())
        pixels = {
            "pixel_values": inputs["pixel_values"].to(param.device, param.dtype),
            "pixel_mask": inputs["pixel_mask"].to(param.device),
        }
        return pixels, (int(rgb.shape[0]), int(rgb.shape[1]))

    def forward(
        self, pixels: dict[str, Any], tokens: PromptTokens
    ) -> tuple[np.ndarray, np.ndarray]:
        """One model call: ``(probs (Q, T) float32, boxes (Q, 4) float32 normalised cx,cy,w,h)``."""
        import torch

        if len(tokens) > self.max_text_len:
            raise PromptError(
                f"prompt is {len(tokens)} tokens long, over the model's {self.max_text_len}"
            )
        if self.fast:
            from grounded_sam.detectors.fast_grounding_dino import optimize_grounding_dino

            optimize_grounding_dino(self.model, dtype=self.fast_dtype)  # idempotent, cheap
        device = pixels["pixel_values"].device
        input_ids = torch.as_tensor(tokens.input_ids, device=device)[None]
        with torch.inference_mode():
            out = self.model(
                **pixels,
                input_ids=input_ids,
                token_type_ids=torch.zeros_like(input_ids),
                attention_mask=torch.ones_like(input_ids),
            )
            probs = torch.sigmoid(out.logits[0, :, : len(tokens)].float())
            boxes = out.pred_boxes[0].float()
        return probs.cpu().numpy(), boxes.cpu().numpy()

    def postprocess(
        self,
        probs: np.ndarray,
        boxes: np.ndarray,
        tokens: PromptTokens,
        image_size: tuple[int, int],
    ) -> Detections:
        """Model outputs of one prompt to detections, best score first, before NMS.

        Args:
            probs: (Q, T) float, sigmoid of the logits over the prompt's T tokens.
            boxes: (Q, 4) float, normalised (cx, cy, w, h) relative to the model's frame:
                the image, or for a thin strip the padded frame whose top-left corner it is
                (:func:`~grounded_sam.detectors.dino_input.detector_frame`).
            tokens: the tokenised prompt.
            image_size: (H, W) of the original image.

        Returns:
            Queries with score > ``box_threshold`` whose box overlaps the image; ``xyxy``
            float32 pixels of the original image, clipped to it.
        """
        from grounded_sam.detectors.dino_input import detector_frame

        frame_size = detector_frame(image_size, self.processor.image_processor)
        scores, class_id = score_queries(probs, tokens, self.class_restricted)
        xyxy = clip_xyxy(cxcywh_norm_to_xyxy(boxes, frame_size), image_size)
        inside = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
        if frame_size == image_size:
            inside[:] = True  # as before: a degenerate box of the image itself is kept
        keep = np.flatnonzero((scores > self.box_threshold) & inside)
        keep = keep[np.argsort(-scores[keep], kind="stable")]
        phrases = build_phrases(probs[keep], tokens, self.text_threshold, self.class_restricted)
        xyxy = xyxy[keep]
        return Detections(
            xyxy=xyxy,
            scores=scores[keep],
            phrases=phrases,
            class_id=class_id[keep],
            image_size=image_size,
        )

    def _filter(self, dets: Detections, mode: str | None) -> Detections:
        if mode is not None and len(dets):
            dets = dets.with_nms(self.nms_iou, class_agnostic=mode != "class")
        return dets

    # ------------------------------------------------------------------ public
    def detect(self, image: Any, prompt: str | Sequence[str]) -> Detections:
        """Detect the prompt's classes in an image.

        Args:
            image: anything :func:`grounded_sam.load_image` takes (path, bytes, PIL image,
                (H, W, 3) uint8 RGB array, ...).
            prompt: ``"cat . traffic light"`` or ``["cat", "traffic light"]``.

        Returns:
            :class:`Detections`, best score first: ``xyxy`` float32 (N, 4) pixels of the
            original image (x1, y1, x2, y2), clipped to it; ``scores`` float32 (N,) in [0, 1];
            ``phrases`` the words of one class that matched; ``class_id`` int64 (N,) indexing
            the prompt's classes (normalised, in the given order), -1 for none.

        Long prompts: when the classes do not fit the model's 256-token text limit, they are
        split into chunks of whole classes; each chunk is one forward pass (the Swin
        backbone runs once, the text-conditioned encoder and decoder once per chunk), and the
        merged results go through per-class NMS at ``nms_iou`` (or class-agnostic NMS when
        ``nms="agnostic"``) so that no query is counted twice.

        Raises:
            PromptError: the prompt is empty or malformed.
            ImageError: the image cannot be loaded.
        """
        chunks = self.prompt_chunks(prompt)
        pixels, size = self.preprocess_image(image)
        parts = []
        with reuse_backbone(self.model) if len(chunks) > 1 else nullcontext():
            for chunk in chunks:
                tokens = PromptTokens.from_tokenizer(self.processor.tokenizer, chunk)
                probs, boxes = self.forward(pixels, tokens)
                parts.append(self.postprocess(probs, boxes, tokens, size))
        dets = Detections.concatenate(parts)
        mode = self.nms
        if len(chunks) > 1 and mode is None:
            mode = "class"
        return self._filter(dets, mode).top_k(self.top_k)

    def __repr__(self) -> str:
        return (
            f"GroundingDinoDetector(box_threshold={self.box_threshold}, "
            f"text_threshold={self.text_threshold}, nms={self.nms!r}, nms_iou={self.nms_iou}, "
            f"top_k={self.top_k}, class_restricted={self.class_restricted})"
        )
