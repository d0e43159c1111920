"""``ClipMaskDetector``: text -> boxes without a detector, from SAM's automatic masks and CLIP.

SAM proposes every object in the image (:meth:`SamSegmenter.generate`); CLIP says which
proposals show one of the prompt's classes:

1. each proposal is cut out along its box; pixels outside its mask are filled with a flat
   colour (by default CLIP's preprocessing mean, which normalises to zero, so the
   background carries no signal) and the cut-out is padded to a square with the same colour
   so CLIP's centre crop keeps the whole object;
2. the cut-outs go through ``clip_model.encode_image`` in batches of ``batch_size``;
3. each class is embedded through prompt templates ("a photo of a {}.", …; the mean of the
   normalised template embeddings) and cached per (model, templates, class); background
   prompts ("background", "a photo of nothing") are embedded as they are;
4. a proposal's logits are ``logit_scale * cos(image, text)`` over classes + background
   prompts; its class is the softmax argmax and its score that probability. It is kept when
   the argmax is a class (not a background prompt) and the probability is >= the threshold;
5. optional per-class box NMS and top-k.

The result's boxes come from the kept masks; by default the masks themselves are dropped so
that the pipeline segments the boxes again with SAM's decoder (the design's flow);
``keep_proposal_masks=True`` keeps them, with ``mask_scores`` = SAM's predicted IoU.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from grounded_sam.classes import parse_classes
from grounded_sam.detectors.options import DEFAULT_BACKGROUND_PROMPTS as DEFAULT_BACKGROUND_PROMPTS
from grounded_sam.detectors.options import DEFAULT_TEMPLATES as DEFAULT_TEMPLATES
from grounded_sam.detectors.options import ClipOptions
from grounded_sam.masks import masks_to_xyxy
from grounded_sam.models import clip_loading
from grounded_sam.options import Configurable
from grounded_sam.segmenters.embedding_cache import LRUCache
from grounded_sam.types import Detections

if TYPE_CHECKING:  # pragma: no cover
    import torch

# open_clip's OPENAI_DATASET_MEAN, the fill colour when the preprocess transform shows none.
_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_TEXT_CACHE_SIZE = 4096


class ClipMaskDetector(Configurable):
    """Open-vocabulary detection by scoring SAM's automatic masks with CLIP.

    Args:
        segmenter: an object with ``generate(image, **options) -> Detections`` whose result has
            ``masks`` (a :class:`~grounded_sam.SamSegmenter`).
        clip_model: has ``encode_image(float tensor (B, 3, S, S)) -> (B, D)`` and
            ``encode_text(int tensor (T, L)) -> (T, D)`` (an ``open_clip`` model). Its
            ``logit_scale`` (the log of the scale, as CLIP stores it) is used when present.
        preprocess: PIL RGB image -> float tensor (3, S, S) (open_clip's eval transform).
        tokenizer: list[str] -> int tensor (T, L) (``open_clip.get_tokenizer(name)``).
        score_threshold: keep a proposal when its class probability is >= this.
        templates: format strings with one ``{}`` for the class name.
        background_prompts: texts that compete with the classes; a proposal whose best match
            is one of them is dropped. ``()`` disables them (then every proposal gets a class).
        batch_size: crops per ``encode_image`` call.
        nms_threshold: box IoU for per-class NMS of the kept proposals; None disables it.
        top_k: keep at most this many detections (highest scores); None keeps all.
        keep_proposal_masks: keep the proposals' masks (and SAM's predicted IoU as
            ``mask_scores``) instead of returning boxes only.
        amg_options: keyword options for ``segmenter.generate`` (``points_per_side``,
            ``pred_iou_thresh``, …), overridable per call.
        background_fill: ``"mean"`` (CLIP's normalisation mean, read from ``preprocess`` when
            it contains a ``Normalize``), an RGB tuple of 0..255, or None to keep the pixels
            around the mask inside its box.
        square_crops: pad each crop to a square with the fill colour before preprocessing.
        logit_scale: overrides the model's scale (the multiplier itself, e.g. 100.0).
        model_id: names the model in ``repr``, ``Pipeline.config`` and the text-embedding
            cache key (default: the model's class name).
    """

    def __init__(
        self,
        segmenter: Any,
        clip_model: Any,
        preprocess: Callable[[Any], Any],
        tokenizer: Callable[[list[str]], Any],
        *,
        score_threshold: float = 0.3,
        templates: Sequence[str] = DEFAULT_TEMPLATES,
        background_prompts: Sequence[str] = DEFAULT_BACKGROUND_PROMPTS,
        batch_size: int = 32,
        nms_threshold: float | None = 0.5,
        top_k: int | None = None,
        keep_proposal_masks: bool = False,
        amg_options: dict[str, Any] | None = None,
        background_fill: str | tuple[int, int, int] | None = "mean",
        square_crops: bool = True,
        logit_scale: float | None = None,
        model_id: str | None = None,
    ) -> None:
        self.options = ClipOptions(
            score_threshold=score_threshold,
            templates=tuple(templates),
            background_prompts=tuple(background_prompts),
            batch_size=batch_size,
            nms_threshold=nms_threshold,
            top_k=top_k,
            keep_proposal_masks=keep_proposal_masks,
            amg_options=dict(amg_options or {}),
            background_fill=background_fill,
            square_crops=square_crops,
            logit_scale=logit_scale,
        )
        self.segmenter = segmenter
        self.clip_model = clip_model
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.fill  # noqa: B018  (a bad background_fill fails here, not on the first crop)
        # Names the model in repr and in Pipeline.config (stable across runs: no object id).
        self.model_id = model_id or type(clip_model).__name__
        # text embedding of each (kind, model, templates..., name), as repr(key)
        self._text_cache: LRUCache[torch.Tensor] = LRUCache(_TEXT_CACHE_SIZE)

    @property
    def fill(self) -> tuple[int, int, int] | None:
        """The RGB fill colour of ``background_fill`` (read from ``preprocess`` for "mean")."""
        return _fill_colour(self.options.background_fill, self.preprocess)

    def config(self) -> dict[str, Any]:
        """The settings that change this detector's output, JSON-able (a resume fingerprint's
        part): the options (``fill`` as the resolved colour), ``model_id`` and the CLIP
        model's parameter count; the same keys as fingerprinted before ``config()`` existed."""
        options = dataclasses.asdict(self.options)
        del options["background_fill"]
        options = {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()}
        fill = self.fill
        params = getattr(self.clip_model, "parameters", None)
        return {
            **options,
            "amg_options": _plain(self.options.amg_options),
            "fill": None if fill is None else [int(c) for c in fill],
            "model_id": self.model_id,
            "params": sum(int(p.numel()) for p in params()) if callable(params) else 0,
        }

    def with_segmenter(self, segmenter: Any) -> ClipMaskDetector:
        """The same detector (CLIP model, options and text-embedding cache shared) proposing
        regions with another segmenter."""
        out = copy.copy(self)
        out.segmenter = segmenter
        return out

    def __repr__(self) -> str:
        return (
            f"ClipMaskDetector(model={self.model_id!r}, score_threshold={self.score_threshold}, "
            f"background_prompts={self.background_prompts!r})"
        )

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        model_name: str = "ViT-B-32",
        pretrained: str | os.PathLike = "laion2b_s34b_b79k",
        *,
        segmenter: Any,
        device: str | torch.device = "cpu",
        models_dir: str | os.PathLike | None = None,
        cache_dir: str | os.PathLike | None = None,
        **kwargs: Any,
    ) -> ClipMaskDetector:
        """Build from an open_clip model name and LOCAL weights; never downloads.

        Args:
            model_name: an open_clip architecture (``"ViT-B-32"``), or a CLIP entry of
                ``grounded_sam.models.registry`` (``"clip_vit_b32"``: architecture and tag
                come from the entry).
            pretrained: a checkpoint file, or an open_clip pretrained tag
                (``"laion2b_s34b_b79k"``, ``"openai"``…) whose weights are on disk: where
                ``grounded-sam download`` puts them (``models_dir``, default
                ``$GROUNDED_SAM_MODELS`` or ``./models``), else in ``cache_dir`` if given, else
                in open_clip's or Hugging Face's default cache. A tag's preprocessing (mean,
                std, interpolation, resize mode) and activation (QuickGELU) are applied.
            segmenter: the proposal source (a :class:`~grounded_sam.SamSegmenter`).
            device: where the CLIP model runs.
            kwargs: passed to the constructor.

        The weights are found and built by :func:`grounded_sam.models.clip_loading.load_clip`.

        Raises:
            MissingCheckpointError: the weights are not on disk; the message names the file
                and the ``grounded-sam download`` command (or the page) that provides it.
            ValueError: ``pretrained`` is neither a file nor a tag open_clip knows.
        """
        clip = clip_loading.load_clip(
            model_name, pretrained, device=device, models_dir=models_dir, cache_dir=cache_dir
        )
        kwargs.setdefault("model_id", clip.model_id)
        return cls(segmenter, clip.model, clip.preprocess, clip.tokenizer, **kwargs)

    # ------------------------------------------------------------------ detection
    def detect(self, image: Any, prompt: str | Sequence[str], **amg_options: Any) -> Detections:
        """Detections of the prompt's classes in ``image``.

        Args:
            image: anything :func:`grounded_sam.load_image` accepts.
            prompt: ``"cat . dog"`` or ``["cat", "dog"]``; ``class_id`` indexes
                :func:`grounded_sam.classes.parse_classes` of it (lower case, each once).
            amg_options: override the constructor's ``amg_options`` for this call.

        Returns:
            :class:`Detections` sorted by score: ``xyxy`` float32 (N, 4) pixel-edge boxes of
            the kept proposal masks, ``scores`` the class probability, ``phrases`` the class
            names, ``class_id`` int64 into the prompt's classes, ``masks`` None (or the
            proposal masks with ``keep_proposal_masks``), and the proposals' ``data`` plus
            ``"proposal_index"`` (int64, the row of ``segmenter.generate``'s result).
        """
        import torch

        from grounded_sam.image import as_rgb

        names = parse_classes(prompt)

        rgb = as_rgb(image)
        h, w = rgb.shape[:2]
        proposals = self.segmenter.generate(rgb, **{**self.amg_options, **amg_options})
        if proposals.masks is None:
            raise ValueError(
                "ClipMaskDetector needs proposal masks, but segmenter.generate returned "
                "Detections without masks"
            )
        if proposals.masks.shape[1:] != (h, w):
            raise ValueError(
                f"segmenter.generate returned masks of size {proposals.masks.shape[1:]} for an "
                f"image of (H, W) = {(h, w)}"
            )
        # the one place boxes come from masks: crops, the result's xyxy and its NMS use them
        boxes = masks_to_xyxy(proposals.masks)  # (P, 4); (0, 0, 0, 0) for an empty mask
        nonempty = np.flatnonzero(boxes[:, 2] > boxes[:, 0])
        if len(nonempty) == 0:
            return self._result(proposals, boxes, nonempty, np.zeros(0), np.zeros(0), names)

        with torch.inference_mode():
            image_feats = self._encode_crops(rgb, proposals.masks[nonempty], boxes[nonempty])
            text_feats = self._encode_texts(names)  # (C + B, D)
            logits = self._scale() * image_feats @ text_feats.T
            probs = logits.float().softmax(dim=-1).cpu().numpy()

        best = probs.argmax(axis=1)
        score = probs[np.arange(len(probs)), best]
        idx = np.flatnonzero((best < len(names)) & (score >= self.score_threshold))
        dets = self._result(proposals, boxes, nonempty[idx], score[idx], best[idx], names)
        if self.nms_threshold is not None:  # per class, on the boxes of the masks
            dets = dets.with_nms(float(self.nms_threshold))
        return dets.top_k(self.top_k)

    def _result(
        self,
        proposals: Detections,
        boxes: np.ndarray,
        rows: np.ndarray,
        scores: np.ndarray,
        labels: np.ndarray,
        names: list[str],
    ) -> Detections:
        """Detections for the proposals ``rows`` of classes ``labels`` (indices into ``names``);
        ``boxes`` float32 (P, 4) xyxy pixel edges of every proposal's mask."""
        rows = rows.astype(np.int64)
        labels = labels.astype(np.int64)
        chosen = proposals[rows]
        return Detections(
            xyxy=boxes[rows],
            scores=scores.astype(np.float32),
            phrases=[names[c] for c in labels],
            class_id=labels.astype(np.int64),
            masks=chosen.masks if self.keep_proposal_masks else None,
            mask_scores=chosen.scores if self.keep_proposal_masks else None,
            image_size=chosen.image_size,
            data={**chosen.data, "proposal_index": rows.astype(np.int64)},
        )

    __call__ = detect

    # ------------------------------------------------------------------ CLIP
    def _model_place(self) -> tuple[torch.device, torch.dtype]:
        import torch

        params = getattr(self.clip_model, "parameters", None)
        if callable(params):
            for p in params():
                return p.device, p.dtype
        return torch.device("cpu"), torch.float32

    def _scale(self) -> float:
        if self.logit_scale is not None:
            return float(self.logit_scale)
        log_scale = getattr(self.clip_model, "logit_scale", None)
        if log_scale is None:
            return 100.0  # CLIP's trained value (exp of its clamp 4.6052)
        import torch

        return float(torch.as_tensor(log_scale).float().exp().reshape(-1)[0])

    def crop(self, image: np.ndarray, mask: np.ndarray, box: Any = None) -> np.ndarray:
        """The cut-out CLIP sees for one proposal: uint8 (h, w, 3).

        ``image`` uint8 (H, W, 3) and ``mask`` bool (H, W); ``box`` the mask's tight xyxy
        pixel-edge box when already known (else it is computed). The crop is that box; pixels
        outside the mask are set to the fill colour, and with ``square_crops`` the crop is
        centred on a square of the fill colour.
        """
        if box is None:
            box = masks_to_xyxy(mask[None])[0]
        x1, y1, x2, y2 = (int(v) for v in box)
        out = image[y1:y2, x1:x2].copy()
        if self.fill is None:
            return out
        out[~mask[y1:y2, x1:x2]] = self.fill
        if self.square_crops and out.shape[0] != out.shape[1]:
            side = max(out.shape[:2])
            square = np.empty((side, side, 3), dtype=np.uint8)
            square[:] = self.fill
            top, left = (side - out.shape[0]) // 2, (side - out.shape[1]) // 2
            square[top : top + out.shape[0], left : left + out.shape[1]] = out
            out = square
        return out

    def _encode_crops(
        self, image: np.ndarray, masks: np.ndarray, boxes: np.ndarray
    ) -> torch.Tensor:
        """Normalised CLIP image embeddings of every proposal, float32 (N, D); ``masks`` bool
        (N, H, W), ``boxes`` their xyxy pixel-edge boxes, float32 (N, 4)."""
        import torch
        from PIL import Image

        device, dtype = self._model_place()
        feats = []
        for start in range(0, len(masks), self.batch_size):
            batch = [
                self.preprocess(Image.fromarray(self.crop(image, masks[i], boxes[i])))
                for i in range(start, min(start + self.batch_size, len(masks)))
            ]
            pixels = torch.stack([torch.as_tensor(t) for t in batch]).to(device, dtype)
            feats.append(_normalise(self.clip_model.encode_image(pixels).float()))
        return torch.cat(feats)

    def _encode_texts(self, names: Sequence[str]) -> torch.Tensor:
        """Normalised text embeddings of the classes then the background prompts, (C + B, D)."""
        import torch

        keys = [("class", self.model_id, *self.templates, n) for n in names]
        keys += [("background", self.model_id, p) for p in self.background_prompts]
        found = {k: self._text_cache.get(repr(k)) for k in keys}
        missing = [k for k, v in found.items() if v is None]
        if missing:
            texts: list[str] = []
            spans: list[tuple[int, int]] = []
            for key in missing:
                batch = (
                    [t.format(key[-1]) for t in self.templates] if key[0] == "class" else [key[-1]]
                )
                spans.append((len(texts), len(texts) + len(batch)))
                texts.extend(batch)
            device, _ = self._model_place()
            tokens = torch.as_tensor(self.tokenizer(texts)).to(device)
            emb = _normalise(self.clip_model.encode_text(tokens).float())
            for key, (a, b) in zip(missing, spans, strict=True):
                found[key] = _normalise(emb[a:b].mean(dim=0, keepdim=True))[0]
                self._text_cache.put(repr(key), found[key])
        return torch.stack([found[k] for k in keys])


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _plain(options: Any) -> dict[str, Any]:
    """Automatic-mask options as JSON values (``point_grids`` arrays as nested lists)."""
    return {k: v.tolist() if hasattr(v, "tolist") else v for k, v in sorted(options.items())}


def _fill_colour(
    fill: str | tuple[int, int, int] | None, preprocess: Any
) -> tuple[int, int, int] | None:
    """The RGB uint8 colour that replaces pixels outside a proposal's mask."""
    if fill is None:
        return None
    if isinstance(fill, str):
        if fill != "mean":
            raise ValueError(f"background_fill must be 'mean', an RGB tuple or None, got {fill!r}")
        mean = _CLIP_MEAN
        for t in getattr(preprocess, "transforms", ()):
            if type(t).__name__ == "Normalize" and len(getattr(t, "mean", ())) == 3:
                mean = tuple(float(v) for v in t.mean)
        return tuple(int(round(255 * v)) for v in mean)  # type: ignore[return-value]
    colour = tuple(int(v) for v in fill)
    if len(colour) != 3 or not all(0 <= v <= 255 for v in colour):
        raise ValueError(f"background_fill must be an RGB tuple of 0..255, got {fill!r}")
    return colour  # type: ignore[return-value]
