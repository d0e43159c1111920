"""``Sam2Segmenter``: SAM 2.1 as stateless calls, with ``SamSegmenter``'s surface.

Built on ``sam2`` (Meta's reference package, ``pip install sam2``) rather than transformers'
``Sam2Model``: the official ``.pt`` checkpoints load into its modules as they are (no key
conversion to maintain), and reusing its own preprocessing (``SAM2Transforms``), prompt
encoder, mask decoder and post-processing makes the exact path bit-identical to
``SAM2ImagePredictor`` and ``SAM2AutomaticMaskGenerator`` by construction; transformers'
port re-implements those steps and can serve as a cross-check. The models are built in code
(:mod:`grounded_sam.segmenters.sam2_loading`), not through ``sam2``'s Hydra configs; its CUDA
extension is not needed (it only fills holes in ``SAM2ImagePredictor``'s optional
post-processing, which is off by default).

Like :class:`grounded_sam.SamSegmenter` it keeps no "current image": :meth:`embed` returns a
:class:`~grounded_sam.segmenters.sam2_encoding.Sam2Embedding` value (the stride-16 embedding
and the two high-resolution feature maps SAM 2's decoder also reads), cached by image content
in a small LRU; every other call takes the image or the embedding, so one segmenter serves
several threads. Coordinates in and out are pixels of the ORIGINAL image, boxes xyxy; SAM 2's
1024 x 1024 frame is internal (:mod:`grounded_sam.segmenters.sam2_prompts`).

``fast=True`` (opt-in, like ``SamSegmenter(fast=True)``) trades bit-identity for speed on a
CPU: the mask decoder shares the image-side work between prompts
(:mod:`grounded_sam.segmenters.fast_sam2_decoder`) and, where the CPU has bf16 kernels
(``runtime.cpu_has_fast_bf16()``: AMX or AVX512-BF16), the Hiera encoder and the decoder run
in bfloat16; elsewhere in float32, equal to the exact path up to float rounding.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from grounded_sam.precision import UNSET, Precision, from_legacy
from grounded_sam.segmenters.embedding_cache import LRUCache
from grounded_sam.segmenters.sam import SegmenterStats
from grounded_sam.segmenters.sam2_encoding import Sam2Embedding as Sam2Embedding
from grounded_sam.segmenters.sam2_encoding import encode_image
from grounded_sam.segmenters.sam2_loading import SAM2_MODEL_TYPES as SAM2_MODEL_TYPES
from grounded_sam.segmenters.sam2_loading import require_sam2
from grounded_sam.segmenters.sam2_prompts import sam2_point_prompts
from grounded_sam.segmenters.sam_decoding import binary_masks
from grounded_sam.segmenters.segmenting import (
    cached_embedding,
    segment_clicks,
    segment_detections,
)
from grounded_sam.types import Detections

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable

    import torch
    from sam2.modeling.sam2_base import SAM2Base

# SAM2ImagePredictor.predict clamps the low-res logits it returns (not those it upscales).
_LOW_RES_CLAMP = 32.0


class Sam2Segmenter:
    """Masks from a ``sam2`` ``SAM2Base`` for boxes, points and masks; automatic masks.

    Args:
        model: a built ``sam2.modeling.sam2_base.SAM2Base`` (put in eval mode here), e.g. from
            :meth:`from_checkpoint` or ``grounded_sam.testing.sam2.tiny_sam2``.
        cache_size: how many image embeddings to keep (LRU by image content); 0 disables.
        device: where to run (the model is moved there); None keeps the model's device.
        max_batch: prompts per mask decoder call; more are split into chunks of this size.
        mask_threshold: logit above which a pixel is in a mask (``SAM2ImagePredictor``'s
            ``mask_threshold``, 0.0).
        precision: ``"exact"`` (default), ``"fast"``, ``"fast-fp32"``, ``"fast-bf16"``,
            ``"fast-fp16"``, ``"autocast-bf16"``, ``"autocast-fp16"``: the one setting of
            :mod:`grounded_sam.precision`. ``fast*`` is ``fast=True`` below with the named
            dtype; ``autocast-*`` runs the exact decoder with the encoder in that dtype.
        fast: (deprecated spelling of ``precision``) the fast path. On a CPU the mask decoder is
            :func:`grounded_sam.segmenters.fast_sam2_decoder.decode_masks` (image-side work
            once for all prompts; 16 boxes ~2x faster in float32, ~10x in bfloat16, see
            benchmarks/README.md); on other devices the decoder stays ``sam2``'s. The
            encoder runs in the compute dtype (below) on every device.
        dtype: (deprecated spelling of ``precision``) compute dtype of the encoder
            (``torch.autocast``) and, with ``fast``, of the
            fast decoder: None (with ``fast``: "auto", bfloat16 on CPUs with AMX/AVX512-BF16
            and on GPUs that support it, float16 on other GPUs, float32 on other CPUs;
            without ``fast``: float32), "fp32", "bf16", "fp16" or a ``torch.dtype``.
            ``GROUNDED_SAM_FORCE_FP32=1`` forces float32. Embeddings, logits and IoU
            predictions are float32 either way.

    By default (``fast=False``, no ``dtype``) everything runs in float32 and gives
    ``SAM2ImagePredictor``'s values bit for bit. ``fast`` in float32 gives the same logits
    up to float rounding (masks can differ where a logit is within ~1e-6 of the threshold);
    in bfloat16 masks agree with the exact path's at IoU >= 0.98 in this project's tests.
    """

    def __init__(
        self,
        model: SAM2Base,
        *,
        cache_size: int = 4,
        device: str | torch.device | None = None,
        max_batch: int = 64,
        mask_threshold: float = 0.0,
        precision: str | Precision | None = None,
        fast: Any = UNSET,
        dtype: Any = UNSET,
    ):
        import torch

        require_sam2()
        from sam2.utils.transforms import SAM2Transforms

        from grounded_sam import runtime
        from grounded_sam.segmenters import fast_sam2_decoder

        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.precision = from_legacy(precision, owner="Sam2Segmenter", fast=fast, dtype=dtype)
        dtype = self.precision.dtype
        self.device = torch.device(device) if device is not None else model.device
        runtime.warn_if_bf16_is_emulated(dtype, self.device)
        self.fast = self.precision.fast
        self.dtype = dtype  # the setting; resolved per call (GROUNDED_SAM_FORCE_FP32)
        self.fast_decoder = (
            self.fast
            and self.precision.fast_decoder is not False
            and self.device.type == "cpu"
            and fast_sam2_decoder.supports(model.sam_mask_decoder)
        )
        self.model = model.to(self.device).eval()
        self.max_batch = int(max_batch)
        self.mask_threshold = float(mask_threshold)  # logit above which a pixel is in a mask
        self.transforms = SAM2Transforms(
            resolution=model.image_size, mask_threshold=self.mask_threshold
        )
        self.stats = SegmenterStats()
        self._cache: LRUCache[Sam2Embedding] = LRUCache(cache_size)
        self._lock = threading.Lock()  # guards stats

    @classmethod
    def from_checkpoint(
        cls,
        model_type: str,
        path: str | Path,
        device: str | torch.device = "cpu",
        *,
        builder: Callable[[], SAM2Base] | None = None,
        name: str | None = None,
        **kw: Any,
    ) -> Sam2Segmenter:
        """Build SAM 2.1 ``model_type`` (``"sam2.1_hiera_tiny"``, ``_small``, ``_base_plus``,
        ``_large``) and load ``path`` (an official ``.pt``: ``{"model": state_dict}``).

        Built and loaded strictly on the CPU by
        ``grounded_sam.segmenters.sam2_loading.build_sam2`` (``builder``, e.g.
        ``grounded_sam.testing.sam2.build_tiny_sam2``, and ``name``: see there), then moved to
        ``device``. Other keyword arguments go to the constructor.

        Raises:
            MissingCheckpointError: ``path`` does not exist (checked before building).
            CheckpointError: the file does not fit the architecture (keys/shapes listed).
            ValueError: unknown ``model_type`` and no ``builder``.
        """
        from grounded_sam.segmenters.sam2_loading import build_sam2

        model = build_sam2(model_type, path, builder=builder, name=name)
        return cls(model, device=device, **kw)

    # ------------------------------------------------------------------ properties
    @property
    def mask_input_size(self) -> tuple[int, int]:
        """(h, w) of the low-res logits (256, 256) that ``mask_input`` takes."""
        return tuple(self.model.sam_prompt_encoder.mask_input_size)  # type: ignore[return-value]

    @property
    def cache(self) -> LRUCache[Sam2Embedding]:
        """The embedding cache (``len``, ``keys()``, ``clear()``, ``hits``, ``misses``)."""
        return self._cache

    def config(self) -> dict[str, Any]:
        """The settings that change this segmenter's masks, JSON-able (a resume fingerprint's
        part): ``mask_threshold``, ``max_batch``, the model's parameter count and, unless
        exact, the precision (so an exact run's fingerprint is what it was before SAM 2.1 had
        other precisions)."""
        config: dict[str, Any] = {
            "mask_threshold": self.mask_threshold,
            "max_batch": self.max_batch,
            "params": sum(int(p.numel()) for p in self.model.parameters()),
        }
        if self.fast or self.dtype is not None:
            config.update(precision=self.precision.name, fast_decoder=bool(self.fast_decoder))
        return config

    def __repr__(self) -> str:
        return (
            f"Sam2Segmenter(device={self.device}, max_batch={self.max_batch},"
            f" cache_size={self._cache.maxsize}, mask_threshold={self.mask_threshold},"
            f" fast={self.fast}, dtype={self.dtype})"
        )

    def compute_dtype(self) -> torch.dtype:
        """The dtype the encoder (and the fast decoder) run in now: float32 unless ``fast``
        or ``dtype`` ask for less (see the class docstring)."""
        import torch

        from grounded_sam import runtime

        if not self.fast and self.dtype is None:
            return torch.float32
        return runtime.resolve_compute_dtype(self.dtype, self.device)

    # ------------------------------------------------------------------ embedding
    def embed(self, image: Any) -> Sam2Embedding:
        """SAM 2's features of ``image`` (anything ``gs.load_image`` accepts), cached by content."""
        from grounded_sam.image import as_rgb

        return self._embed_array(as_rgb(image))

    def _embed_array(self, img: np.ndarray) -> Sam2Embedding:
        return cached_embedding(
            self,
            img,
            lambda im, key: encode_image(
                self.model,
                self.transforms,
                im,
                key,
                device=self.device,
                autocast_dtype=self.compute_dtype(),
            ),
        )

    def clear_cache(self) -> None:
        """Forget every cached embedding."""
        self._cache.clear()

    # ------------------------------------------------------------------ decoding
    def decode(
        self,
        embedding: Sam2Embedding,
        *,
        points: Any = None,
        point_labels: Any = None,
        boxes: Any = None,
        mask_input: Any = None,
        multimask: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run SAM 2's prompt encoder and mask decoder for B prompts on one embedding.

        Args:
            embedding: from :meth:`embed`.
            points: (B, K, 2) (x, y) pixels of the original image; with ``point_labels``
                (B, K), 1 = foreground, 0 = background.
            boxes: (B, 4) xyxy pixels of the original image (used as given; see
                :meth:`segment` for clipping).
            mask_input: (B, 1, 256, 256) low-res logits from an earlier call.
            multimask: three masks per prompt instead of one (with one mask, SAM 2's decoder
                falls back to the best of three when the single one is unstable).

        Returns:
            ``low_res_logits`` float32 (B, M, 256, 256) (not clamped) and ``iou_pred`` float32
            (B, M) on the segmenter's device, M = 3 if ``multimask`` else 1. The decoder runs
            once per chunk of ``max_batch`` prompts (``sam2``'s, or with ``fast`` on a CPU
            :func:`grounded_sam.segmenters.fast_sam2_decoder.decode_masks`).
        """
        import torch

        from grounded_sam.segmenters import fast_sam2_decoder

        points_in, masks_in, size = sam2_point_prompts(
            points=points,
            point_labels=point_labels,
            boxes=boxes,
            mask_input=mask_input,
            transforms=self.transforms,
            original_size=embedding.original_size,
            mask_input_size=self.mask_input_size,
            device=self.device,
        )
        m = 3 if multimask else 1
        if size == 0:
            empty = torch.zeros((0, m, *self.mask_input_size), device=self.device)
            return empty, torch.zeros((0, m), device=self.device)
        prompt_encoder, decoder = self.model.sam_prompt_encoder, self.model.sam_mask_decoder
        lows, ious = [], []
        dtype = self.compute_dtype() if self.fast_decoder else None
        with torch.no_grad():
            image_pe = prompt_encoder.get_dense_pe()
            for start in range(0, size, self.max_batch):
                stop = start + self.max_batch
                pts = (
                    None
                    if points_in is None
                    else (points_in[0][start:stop], points_in[1][start:stop])
                )
                sparse, dense = prompt_encoder(
                    points=pts,
                    boxes=None,
                    masks=None if masks_in is None else masks_in[start:stop],
                )
                if dtype is not None:
                    low, iou = fast_sam2_decoder.decode_masks(
                        decoder,
                        embedding.image_embed,
                        image_pe,
                        sparse,
                        dense,
                        embedding.high_res_feats,
                        multimask=multimask,
                        dtype=dtype,
                    )
                else:
                    batched = pts is not None and pts[0].shape[0] > 1  # as SAM2ImagePredictor
                    low, iou, _, _ = decoder(
                        image_embeddings=embedding.image_embed,
                        image_pe=image_pe,
                        sparse_prompt_embeddings=sparse,
                        dense_prompt_embeddings=dense,
                        multimask_output=multimask,
                        repeat_image=batched,
                        high_res_features=list(embedding.high_res_feats),
                    )
                lows.append(low)
                ious.append(iou)
                with self._lock:
                    self.stats.decoder_calls += 1
                    self.stats.prompts_decoded += len(low)
        if len(lows) == 1:
            return lows[0].float(), ious[0].float()
        return torch.cat(lows).float(), torch.cat(ious).float()

    def upscale_masks(self, low_res_logits: torch.Tensor, embedding: Sam2Embedding) -> torch.Tensor:
        """(B, M, 256, 256) low-res logits -> (B, M, H, W) float logits at the original size.

        One bilinear resampling (``SAM2Transforms.postprocess_masks`` without its optional
        hole filling), bit for bit. Threshold with :attr:`mask_threshold`.
        """
        import torch

        with torch.no_grad():
            return self.transforms.postprocess_masks(low_res_logits, embedding.original_size)

    def _binary_masks(self, low_res: torch.Tensor, embedding: Sam2Embedding) -> np.ndarray:
        """(N, 256, 256) logits -> bool (N, H, W) numpy, upscaled a few at a time."""
        return binary_masks(
            lambda low: self.upscale_masks(low, embedding),
            low_res,
            embedding.original_size,
            self.mask_threshold,
        )

    # ------------------------------------------------------------------ public calls
    def segment(self, image: Any, detections: Detections, multimask: bool = False) -> Detections:
        """Masks for every box of ``detections``, all boxes in one decoder call.

        Args:
            image: the image the detections were made on (anything ``gs.load_image``
                accepts); embedded once, or taken from the cache.
            detections: boxes ``xyxy`` float (N, 4) in pixels of the original image. Boxes are
                clipped to the image and widened to at least 1 px
                (``grounded_sam.segmenters.prompts.prompt_boxes``); boxes inside the image go
                to the model unchanged.
            multimask: decode three masks per box and keep the one with the highest
                predicted IoU.

        Returns:
            ``detections.replace(masks=bool (N, H, W), mask_scores=float32 (N,))``, the
            scores being SAM 2's predicted IoU of each returned mask.
        """
        return segment_detections(self, image, detections, multimask=multimask)

    def segment_points(
        self,
        image: Any,
        points_xy: Any,
        labels: Any,
        box: Any = None,
        mask_input: Any = None,
    ) -> tuple[np.ndarray, float, np.ndarray]:
        """One object from clicks (and optionally a box and the previous low-res logits).

        Args:
            image: anything ``gs.load_image`` accepts.
            points_xy: (K, 2) (x, y) pixels of the original image (K may be 0 with a box).
            labels: (K,) 1 = foreground, 0 = background.
            box: optional (4,) xyxy pixels, clipped like :meth:`segment`'s boxes.
            mask_input: optional (1, 256, 256) (or (256, 256)) low-res logits returned by an
                earlier call: refines that mask with the new clicks.

        A single click alone is ambiguous: three masks are decoded and the one with the
        highest predicted IoU is kept. Several clicks, a box or a ``mask_input`` give one mask.

        Returns:
            ``mask`` bool (H, W), ``score`` (predicted IoU) and ``low_res_logits`` float32
            (1, 256, 256), clamped to [-32, 32] as ``SAM2ImagePredictor.predict`` returns
            them, to pass back as ``mask_input``.
        """
        return segment_clicks(
            self,
            image,
            points_xy,
            labels,
            box,
            mask_input,
            mask_input_size=self.mask_input_size,
            clamp=_LOW_RES_CLAMP,
        )

    def generate(self, image: Any, **amg_options: Any) -> Detections:
        """Automatic masks for everything in ``image``; see :mod:`grounded_sam.segmenters.sam2_amg`."""
        from grounded_sam.segmenters.sam2_amg import generate_sam2_masks

        return generate_sam2_masks(self, image, **amg_options)
