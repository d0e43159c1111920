"""``SamSegmenter``: Segment Anything as stateless calls — embed once, decode many prompts.

Compared with ``segment_anything.SamPredictor`` it keeps no "current image": :meth:`embed`
returns an :class:`ImageEmbedding` value, cached by image content in a small LRU, and every
other call takes the image (or the embedding). One segmenter can therefore serve several
threads or web requests at once. The arithmetic is SamPredictor's own (``ResizeLongestSide``,
``Sam.preprocess``, the prompt encoder, the mask decoder, ``Sam.postprocess_masks``), so masks
are bit-for-bit those of ``SamPredictor.predict_torch`` for the same weights and prompts.

Coordinates in and out are pixels of the ORIGINAL image; the 1024-long-side frame of the
model is an internal detail. Point and box prompts keep their float precision on the way
to the prompt encoder: float64 input (numpy's default) is scaled and embedded in float64, as
``SamAutomaticMaskGenerator`` does; anything else in float32, as ``predict_torch`` with
``ResizeLongestSide.apply_*_torch`` does.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from grounded_sam.precision import UNSET, Precision, from_legacy
from grounded_sam.segmenters.embedding_cache import LRUCache
from grounded_sam.segmenters.prompts import prepare_prompts
from grounded_sam.segmenters.sam_decoding import binary_masks, fast_decode_fn, upscale_to_original
from grounded_sam.segmenters.sam_encoding import ImageEmbedding as ImageEmbedding
from grounded_sam.segmenters.sam_encoding import (
    check_sam_image_shape,
    encode_image,
    parse_encoder_dtype,
)
from grounded_sam.segmenters.sam_loading import SAM_MODEL_TYPES as SAM_MODEL_TYPES
from grounded_sam.segmenters.segmenting import (
    cached_embedding,
    segment_clicks,
    segment_detections,
)
from grounded_sam.types import Detections

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable

    import torch
    from segment_anything.modeling import Sam

# image encoders ``fast`` can run (SamSegmenter(encoder_runtime=...))
ENCODER_RUNTIMES = ("torch", "openvino")


@dataclass
class SegmenterStats:
    """Counters a caller (or a test) can read: how much model work was done."""

    encoder_calls: int = 0  # image encoder forward passes (cache misses)
    cache_hits: int = 0  # embed() calls answered from the cache
    decoder_calls: int = 0  # mask decoder forward passes (one per chunk of <= max_batch prompts)
    prompts_decoded: int = 0  # prompts (rows B) that went through the decoder


class SamSegmenter:
    """Masks from a segment_anything ``Sam`` for boxes, points and masks; automatic masks.

    Args:
        sam: a built ``segment_anything.modeling.Sam`` (put in eval mode here).
        cache_size: how many image embeddings to keep (LRU by image content); 0 disables.
        device: where to run (the model is moved there); None keeps the model's device.
        precision: ``"exact"`` (default: ``SamPredictor``'s arithmetic, bit for bit),
            ``"fast"``, ``"fast-fp32"``, ``"fast-bf16"``, ``"fast-fp16"``, ``"autocast-bf16"``,
            ``"autocast-fp16"`` (table: :mod:`grounded_sam.precision`). ``fast*`` switches the
            image encoder to ``grounded_sam.segmenters.fast_sam.optimize_sam``'s on the first
            ``embed`` (it modifies ``sam`` in place) and, on a CPU, decodes and upscales masks
            with ``grounded_sam.segmenters.fast_decoder`` (image-side work shared by all
            prompts, one resampling to the original size: the same low-res logits up to
            rounding in float32, masks that differ along edges; slower on a GPU, so off
            there: benchmarks/README.md). The dtype suffix is the compute dtype of both
            (none: bfloat16 on CPUs with AMX/AVX512-BF16, float32 on other CPUs, the GPU's
            best); ``GROUNDED_SAM_FORCE_FP32=1`` forces float32. ``autocast-*`` runs SAM's
            own encoder under ``torch.autocast``. Embeddings, logits and IoU predictions are
            float32 either way. Decoders other than segment_anything's ``MaskDecoder`` always
            take the exact path.
        max_batch: prompts per mask decoder call; more are split into chunks of this size.
        encoder_runtime: which image encoder ``fast`` runs on a CPU: "torch" (the default:
            ours, ``optimize_sam``) or "openvino" (``grounded_sam.segmenters.openvino_encoder``:
            OpenVINO's fp32 compilation of the same encoder, the optional ``openvino`` extra;
            an opt-in for CPUs without bf16 kernels, see benchmarks/README.md).
        dtype / fast / fast_decoder / decoder_dtype: deprecated spellings of ``precision``
            (:func:`grounded_sam.precision.from_legacy`; ``fast_decoder`` and
            ``decoder_dtype`` still override the decoder's part).
    """

    def __init__(
        self,
        sam: Sam,
        *,
        cache_size: int = 4,
        device: str | torch.device | None = None,
        precision: str | Precision | None = None,
        max_batch: int = 64,
        encoder_runtime: str = "torch",
        dtype: Any = UNSET,
        fast: Any = UNSET,
        fast_decoder: Any = UNSET,
        decoder_dtype: Any = UNSET,
    ):
        import torch
        from segment_anything.utils.transforms import ResizeLongestSide

        from grounded_sam import runtime
        from grounded_sam.validation import check_int

        max_batch = check_int("max_batch", max_batch, low=1)
        cache_size = check_int("cache_size", cache_size, low=0)
        self.precision = from_legacy(
            precision,
            owner="SamSegmenter",
            fast=fast,
            dtype=dtype,
            fast_decoder=fast_decoder,
            decoder_dtype=decoder_dtype,
        )
        fast, dtype = self.precision.fast, self.precision.dtype
        fast_decoder, decoder_dtype = self.precision.fast_decoder, self.precision.decoder_dtype
        self.device = torch.device(device) if device is not None else sam.device
        self.sam = sam.to(self.device).eval()
        self.dtype = parse_encoder_dtype(dtype)
        self._dtype_requested = dtype is not None
        self.max_batch = int(max_batch)
        self.fast = bool(fast)
        if encoder_runtime not in ENCODER_RUNTIMES:
            raise ValueError(
                f"encoder_runtime must be one of {ENCODER_RUNTIMES}, got {encoder_runtime!r}"
            )
        self.encoder_runtime = encoder_runtime
        self._openvino_encoder: Any = None
        if fast_decoder is None:  # it pays on CPUs (5-9x), not on GPUs (see the docstring)
            fast_decoder = self.fast and self.device.type == "cpu"
        self.fast_decoder = bool(fast_decoder)
        runtime.parse_dtype(decoder_dtype)  # refuse a bad spelling now, not on first decode
        for setting in (dtype, decoder_dtype):  # bf16 without bf16 kernels: slow, say so now
            runtime.warn_if_bf16_is_emulated(setting, self.device)
        if decoder_dtype is None and self._dtype_requested:
            decoder_dtype = dtype
        self._decoder_dtype_setting = decoder_dtype
        self.transform = ResizeLongestSide(sam.image_encoder.img_size)
        self.stats = SegmenterStats()
        self._cache: LRUCache[ImageEmbedding] = LRUCache(cache_size)
        self._lock = threading.Lock()  # guards stats and the one-time fast set-up
        self._fast_ready = False

    @classmethod
    def from_checkpoint(
        cls,
        model_type: str,
        path: str | Path,
        device: str | torch.device = "cpu",
        *,
        builder: Callable[[], Sam] | None = None,
        name: str | None = None,
        **kw: Any,
    ) -> SamSegmenter:
        """Build SAM ``model_type`` (``"vit_h"``, ``"vit_l"``, ``"vit_b"``) and load ``path``.

        Built and loaded strictly on the CPU by ``grounded_sam.segmenters.sam_loading.build_sam``
        (``builder``, e.g. ``grounded_sam.testing.sam.build_tiny_sam``, and ``name``: see
        there), then moved to ``device``. Other keyword arguments go to the constructor.

        Raises:
            MissingCheckpointError: ``path`` does not exist (checked before building).
            CheckpointError: the file does not fit the architecture (keys/shapes listed).
            ValueError: unknown ``model_type`` and no ``builder``.
        """
        from grounded_sam.segmenters.sam_loading import build_sam

        sam = build_sam(model_type, path, builder=builder, name=name)
        return cls(sam, device=device, **kw)

    # ------------------------------------------------------------------ properties
    @property
    def mask_threshold(self) -> float:
        """Logit above which a pixel belongs to the mask (SAM's ``mask_threshold``, 0.0)."""
        return float(self.sam.mask_threshold)

    @property
    def cache(self) -> LRUCache[ImageEmbedding]:
        """The embedding cache (``len``, ``keys()``, ``clear()``, ``hits``, ``misses``)."""
        return self._cache

    def config(self) -> dict[str, Any]:
        """The settings that change this segmenter's masks, JSON-able (a resume fingerprint's
        part): encoder dtype, runtime, ``fast`` / ``fast_decoder`` (the precision) and
        ``max_batch``, and the model's parameter count; the same keys as fingerprinted before
        ``config()`` existed. Cache size and counters change no output and are left out."""
        return {
            "dtype": str(self.dtype),
            "encoder_runtime": self.encoder_runtime,
            "fast": self.fast,
            "fast_decoder": self.fast_decoder,
            "max_batch": self.max_batch,
            "params": sum(int(p.numel()) for p in self.sam.parameters()),
        }

    def __repr__(self) -> str:
        return (
            f"SamSegmenter(device={self.device}, dtype={self.dtype}, max_batch={self.max_batch},"
            f" cache_size={self._cache.maxsize}, fast={self.fast},"
            f" fast_decoder={self.fast_decoder})"
        )

    # ------------------------------------------------------------------ embedding
    def embed(self, image: Any) -> ImageEmbedding:
        """The image embedding of ``image`` (anything ``gs.load_image`` accepts), cached by content.

        The image is resized with ``ResizeLongestSide`` and normalised and padded with
        ``Sam.preprocess``, exactly as ``SamPredictor.set_image`` does.
        """
        from grounded_sam.image import as_rgb

        return self._embed_array(as_rgb(image))

    def _embed_array(self, img: np.ndarray) -> ImageEmbedding:
        """:meth:`embed` for an image already loaded by ``load_image`` (RGB uint8 (H, W, 3))."""
        check_sam_image_shape(img.shape[:2], self.transform.target_length)
        return cached_embedding(self, img, self._encode)

    def _encode(self, img: np.ndarray, key: str) -> ImageEmbedding:
        sam = self._model_for_encoding()
        autocast = None if self.fast else self.dtype  # the fast encoder casts by itself
        return encode_image(
            sam,
            self.transform,
            img,
            key,
            device=self.device,
            autocast_dtype=autocast,
            encoder=self._openvino_encoder,
        )

    def _model_for_encoding(self) -> Sam:
        if not self.fast or self._fast_ready:
            return self.sam
        with self._lock:
            if not self._fast_ready:
                from grounded_sam.segmenters.sam_encoding import fast_encoder_model

                if self.resolved_encoder_runtime() == "openvino":
                    from grounded_sam.segmenters.openvino_encoder import openvino_encoder_for

                    self._openvino_encoder = openvino_encoder_for(self.sam.image_encoder)
                else:
                    # without an explicit dtype the fast encoder picks the best for the device
                    self.sam = fast_encoder_model(
                        self.sam, self.dtype if self._dtype_requested else None
                    )
                self._fast_ready = True
        return self.sam

    def resolved_encoder_runtime(self) -> str:
        """Which image encoder runs: "openvino" when fast with ``encoder_runtime="openvino"``
        on a CPU, else "torch"."""
        if self.fast and self.encoder_runtime == "openvino" and self.device.type == "cpu":
            return "openvino"
        return "torch"

    def clear_cache(self) -> None:
        """Forget every cached embedding."""
        self._cache.clear()

    # ------------------------------------------------------------------ decoding
    def decode(
        self,
        embedding: ImageEmbedding,
        *,
        points: Any = None,
        point_labels: Any = None,
        boxes: Any = None,
        mask_input: Any = None,
        multimask: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the prompt encoder and mask decoder for B prompts on one embedding.

        Args:
            embedding: from :meth:`embed`.
            points: (B, K, 2) (x, y) pixels of the original image; with ``point_labels``
                (B, K), 1 = foreground, 0 = background.
            boxes: (B, 4) xyxy pixels of the original image (used as given; see
                :meth:`segment` for clipping).
            mask_input: (B, 1, 256, 256) low-res logits from an earlier call.
            multimask: three masks per prompt instead of one.

        Returns:
            ``low_res_logits`` float32 (B, M, 256, 256) and ``iou_pred`` float32 (B, M) on the
            segmenter's device, M = 3 if ``multimask`` else 1. The decoder runs once per
            chunk of ``max_batch`` prompts; B = 0 runs nothing. With ``fast_decoder`` the
            values are those of :func:`grounded_sam.segmenters.fast_decoder.decode_masks`.
        """
        import torch

        prompts = prepare_prompts(
            points=points,
            point_labels=point_labels,
            boxes=boxes,
            mask_input=mask_input,
            original_size=embedding.original_size,
            input_size=embedding.input_size,
            mask_input_size=tuple(self.sam.prompt_encoder.mask_input_size),
            device=self.device,
        )
        m = 3 if multimask else 1
        if prompts.size == 0:
            low_res = tuple(self.sam.prompt_encoder.mask_input_size)
            empty = torch.zeros((0, m, *low_res), dtype=torch.float32, device=self.device)
            return empty, torch.zeros((0, m), dtype=torch.float32, device=self.device)

        fast = None  # the fast decoder bound to this model and dtype, or SAM's own decoder
        if self.fast_decoder:
            fast = fast_decode_fn(self.sam.mask_decoder, self.device, self._decoder_dtype_setting)
        lows, ious = [], []
        with torch.no_grad():
            image_pe = self.sam.prompt_encoder.get_dense_pe()
            for start in range(0, prompts.size, self.max_batch):
                chunk = prompts.chunk(start, start + self.max_batch)
                sparse, dense = self.sam.prompt_encoder(
                    points=None if chunk.coords is None else (chunk.coords, chunk.labels),
                    boxes=chunk.boxes,
                    masks=chunk.masks,
                )
                if fast is not None:
                    low, iou = fast(embedding.features, image_pe, sparse, dense, multimask)
                else:
                    low, iou = self.sam.mask_decoder(
                        image_embeddings=embedding.features,
                        image_pe=image_pe,
                        sparse_prompt_embeddings=sparse,
                        dense_prompt_embeddings=dense,
                        multimask_output=multimask,
                    )
                lows.append(low)
                ious.append(iou)
                with self._lock:
                    self.stats.decoder_calls += 1
                    self.stats.prompts_decoded += chunk.size
        if len(lows) == 1:
            return lows[0].float(), ious[0].float()
        return torch.cat(lows).float(), torch.cat(ious).float()

    def upscale_masks(
        self, low_res_logits: torch.Tensor, embedding: ImageEmbedding
    ) -> torch.Tensor:
        """(B, M, 256, 256) low-res logits -> (B, M, H, W) float logits at the original size.

        SAM's ``postprocess_masks`` (upscale to 1024, remove the padding, resize to (H, W)),
        bit for bit, without upscaling the padding
        (``fast_decoder.upscale_logits_exact``). With ``fast_decoder``: one bilinear
        resampling of the unpadded region straight to (H, W) (``fast_decoder.upscale_logits``),
        faster, with masks that differ along edges. Threshold with :attr:`mask_threshold`.
        """
        img_size = self.sam.image_encoder.img_size
        return upscale_to_original(low_res_logits, embedding, img_size, fast=self.fast_decoder)

    def _binary_masks(self, low_res: torch.Tensor, embedding: ImageEmbedding) -> np.ndarray:
        """(N, 256, 256) logits -> bool (N, H, W) numpy, upscaled a few at a time."""

        def upscale(logits: torch.Tensor) -> torch.Tensor:
            return self.upscale_masks(logits, embedding)

        return binary_masks(upscale, low_res, embedding.original_size, self.mask_threshold)

    # ------------------------------------------------------------------ tasks
    def segment(self, image: Any, detections: Detections, multimask: bool = False) -> Detections:
        """Masks for every box of ``detections``: the same detections with masks filled.

        All boxes go through the mask decoder in one call (chunks of ``max_batch``). Boxes are
        clipped to the image first; a box that is less than 1 px wide or tall after clipping
        (empty, or entirely outside the image) is widened to 1 px around its centre, kept
        inside the image, so it still gets a mask and nothing fails. ``xyxy`` is returned
        unchanged. Zero detections run no model at all.

        Args:
            image: anything ``gs.load_image`` accepts; the detections' image.
            detections: boxes in pixels of that image.
            multimask: decode three masks per box and keep the one with the highest
                predicted IoU (only that one is upscaled).

        Returns:
            ``detections.replace(masks=bool (N, H, W), mask_scores=float32 (N,))``, the
            scores being SAM's predicted IoU of each returned mask.
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
            points_xy: (K, 2) (x, y) pixels of the original image, finite (K may be 0, or
                ``points_xy`` and ``labels`` None, with a box or ``mask_input``).
            labels: (K,) 1 = foreground, 0 = background.
            box: optional (4,) xyxy pixels, x1 <= x2 and y1 <= y2 (as in :meth:`segment`,
                a reversed box is refused), clipped like :meth:`segment`'s boxes.
            mask_input: optional (1, 256, 256) (or (256, 256)) low-res logits returned by an
                earlier call: refines that mask with the new clicks.

        A single click alone is ambiguous: three masks are decoded and the one with the
        highest predicted IoU is kept (as SAM's demo does). Several clicks, a box or a
        ``mask_input`` give one mask directly.

        Returns:
            ``mask`` bool (H, W), ``score`` (predicted IoU) and ``low_res_logits`` float32
            (1, 256, 256) to pass back as ``mask_input``.

        Raises:
            ValueError / TypeError: a prompt of the wrong shape, non-numeric, NaN or inf.
            ImageError: the image cannot be loaded or is too elongated for SAM.
        """
        return segment_clicks(
            self,
            image,
            points_xy,
            labels,
            box,
            mask_input,
            mask_input_size=tuple(self.sam.prompt_encoder.mask_input_size),
        )

    def generate(self, image: Any, **amg_options: Any) -> Detections:
        """Automatic masks for everything in ``image``; see ``grounded_sam.segmenters.amg``.

        Options are checked first (:func:`~grounded_sam.segmenters.amg_options.check_amg_options`):
        an unknown name is a ``TypeError`` listing the known ones, a value out of range a
        ``ValueError`` giving the range.
        """
        from grounded_sam.segmenters.amg import generate_masks
        from grounded_sam.segmenters.amg_options import check_amg_options

        return generate_masks(self, image, **check_amg_options(amg_options))
