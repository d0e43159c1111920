"""``load_image``: any image input -> RGB uint8 (H, W, 3), C-contiguous, with clear errors.

Accepted inputs: a path (``str`` or ``os.PathLike``), encoded bytes (``bytes``,
``bytearray``, ``memoryview``), a binary file object, a ``PIL.Image.Image`` or a numpy array.
Every result is a new array the caller owns: uint8, shape (H, W, 3), RGB order, C-contiguous.

Rules (the same for files and in-memory images):

- Orientation: the EXIF ``Orientation`` tag is applied (``PIL.ImageOps.exif_transpose``), so
  the array is upright as a photo viewer shows it. A damaged EXIF block is ignored, as viewers
  ignore it, rather than making good pixels unusable.
- Animated or multi-page files (GIF, APNG, TIFF): the first frame. A ``PIL.Image`` you pass
  keeps its current frame.
- Transparency is composited over WHITE: ``out = (c * a + 255 * (255 - a)) / 255`` rounded to
  the nearest integer (premultiplied ``La``/``RGBa``: ``min(c + 255 - a, 255)``). White is what
  a person sees in an image viewer or a web page, so detections and masks refer to the picture
  the user looked at; black (PIL's ``convert("RGB")``) would turn black-on-transparent logos and
  line art into a black square, and a checkerboard would add edges that are not there. This
  covers ``RGBA``, ``LA``, ``PA``, ``La``, ``RGBa``, palette images with a transparent index or
  an RGBA palette, and ``L``/``RGB`` images with a colour key (PNG ``tRNS``).
- Gray (``1``, ``L``) is replicated into three channels; ``1`` becomes 0 / 255.
- ``P``, ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``, ``RGBX``: PIL's own conversion to RGB (CMYK is
  PIL's plain conversion; embedded ICC profiles are not applied anywhere).
- 16-bit modes (``I;16``, ``I;16L``, ``I;16B``, ``I;16N``; 16-bit grayscale PNG/TIFF): the
  full 0..65535 range maps to 0..255 by ``v >> 8``.
- 32-bit integer mode ``I`` and integer numpy arrays other than uint8 (the *integer rule*):
  values are clipped to 0..65535; then, if the largest value is above 255, ``v >> 8``,
  otherwise the values are used as they are. So 16-bit data scales down and 8-bit data stored
  in a wider type is kept. (Colour and alpha of a 4-channel array are scaled separately.)
- Float mode ``F`` (range unknown, e.g. float TIFF): if the largest value is <= 1 the image is
  taken as [0, 1] and multiplied by 255, otherwise values are clipped to 0..255; rounded to
  nearest. NaN or inf is an error.
- numpy arrays: (H, W) or (H, W, 1) gray, (H, W, 3) RGB (flip OpenCV's BGR with
  ``arr[..., ::-1]`` first), (H, W, 4) RGBA composited over white. dtypes: uint8 as is; bool ->
  0 / 255; other integers by the integer rule; floats must lie in [0, 1] and are multiplied by
  255 and rounded. Floats outside [0, 1], NaN or inf are errors (scale the array yourself; we
  will not guess whether 0..255 or -1..1 was meant).

Limits: an image with more than ``max_pixels`` pixels (default :data:`DEFAULT_MAX_PIXELS`,
8192 x 8192; override per call or with the environment variable ``GROUNDED_SAM_MAX_PIXELS``)
is refused after reading only the header, before any pixel is decoded. PIL's own
decompression-bomb guard (``PIL.Image.MAX_IMAGE_PIXELS``) is honoured too and reported the
same way; this module never changes PIL's global settings (``MAX_IMAGE_PIXELS``,
``ImageFile.LOAD_TRUNCATED_IMAGES``), so truncated files are errors, not gray-padded images.
EPS files are refused (PIL renders them by running Ghostscript on the file's code).

Every failure raises :class:`grounded_sam.errors.ImageError` whose message names the source
(the path, ``<bytes>``, ``<file object>``, ``<PIL.Image>`` or ``<ndarray>``) and the reason.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import warnings
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from grounded_sam.errors import ImageError

DEFAULT_MAX_PIXELS = 8192 * 8192
"""Largest image (width x height) :func:`load_image` accepts unless told otherwise (~67 MP)."""

MAX_PIXELS_ENV = "GROUNDED_SAM_MAX_PIXELS"
"""Environment variable that overrides :data:`DEFAULT_MAX_PIXELS` (read at each call)."""

ImageSource = (
    str | os.PathLike | bytes | bytearray | memoryview | IO[bytes] | Image.Image | np.ndarray
)

# Formats PIL can open but we refuse: EPS is rendered by running Ghostscript on the file.
_REFUSED_FORMATS = {"EPS": "PostScript is rendered by running Ghostscript; convert it to PNG first"}

_ORIENTATION_TAG = 0x0112  # EXIF "Orientation"

# `warnings.catch_warnings` swaps the process-wide filter list; serialise our own uses of it so
# two threads loading images cannot restore each other's filters in the wrong order.
_WARNINGS_LOCK = threading.Lock()


def load_image(src: ImageSource, *, max_pixels: int | None = None) -> np.ndarray:
    """Load an image as RGB uint8 (H, W, 3), C-contiguous, upright per EXIF.

    Args:
        src: a path (``str`` / ``os.PathLike``), encoded image bytes (``bytes``,
            ``bytearray``, ``memoryview``), a binary file object (read from its start), a
            ``PIL.Image.Image`` or a numpy array ((H, W), (H, W, 1), (H, W, 3) RGB or
            (H, W, 4) RGBA; see the module docstring for dtypes and value ranges).
        max_pixels: refuse images with more than this many pixels (width x height), checked
            from the header before decoding. ``None``: ``$GROUNDED_SAM_MAX_PIXELS`` if set,
            else :data:`DEFAULT_MAX_PIXELS`.

    Returns:
        A new uint8 array of shape (H, W, 3) in RGB order that the caller owns.

    Raises:
        ImageError: the input is missing, empty, not an image, truncated or corrupt, too
            large, zero-sized, or an array of an unsupported shape, dtype or value range.
            ``str(err)`` names the source and the reason.
        ValueError: ``max_pixels`` (or the environment variable) is not a positive integer.
    """
    limit = _resolve_max_pixels(max_pixels)
    if isinstance(src, np.ndarray):
        out = _array_to_rgb(src, "<ndarray>", limit)
        if np.may_share_memory(out, src):
            out = out.copy()
        return out
    if isinstance(src, Image.Image):
        return _pil_to_rgb(src, "<PIL.Image>", limit)
    if isinstance(src, bytes | bytearray | memoryview):
        data = src.tobytes() if isinstance(src, memoryview) else src
        if len(data) == 0:
            raise ImageError("<bytes>", "empty input (0 bytes)")
        return _decode_stream(io.BytesIO(data), "<bytes>", limit)
    if isinstance(src, str | os.PathLike):
        return _load_path(src, limit)
    if hasattr(src, "read"):
        return _load_file_object(src, limit)
    raise ImageError(
        f"<{type(src).__name__}>",
        "unsupported input type; pass a path, bytes, a binary file object, a PIL image or a "
        "numpy array (H, W, 3)",
    )


def as_rgb(image: ImageSource, *, max_pixels: int | None = None) -> np.ndarray:
    """``image`` as RGB uint8 (H, W, 3): decoded once, then passed on without copies.

    An array that already is RGB uint8 (H, W, 3), C-contiguous and not empty (what
    :func:`load_image` returns) is returned as it is: not copied, not converted; only its size
    is checked against ``max_pixels``, as :func:`load_image` would. The project's steps only
    read images, so an array one step decoded is shared by the next ones. Anything else goes
    through :func:`load_image`. Entry points that take user input (``Pipeline.__call__``,
    the CLI, the web service) call this or :func:`load_image` once; the components they call
    then decode nothing.

    Raises:
        ImageError: as :func:`load_image`.
    """
    if (
        isinstance(image, np.ndarray)
        and image.dtype == np.uint8
        and image.ndim == 3
        and image.shape[2] == 3
        and image.flags.c_contiguous
    ):
        _check_size(image.shape[1], image.shape[0], "<ndarray>", _resolve_max_pixels(max_pixels))
        return image
    return load_image(image, max_pixels=max_pixels)


def image_content_key(image: np.ndarray) -> str:
    """A hex SHA-1 of an array's dtype, shape and bytes: equal keys mean equal images.

    Used to cache per-image work (SAM embeddings) by content rather than by object identity.
    """
    arr = np.ascontiguousarray(image)
    if arr.dtype.hasobject:
        raise TypeError("image_content_key needs a numeric array, got dtype object")
    digest = hashlib.sha1(usedforsecurity=False)
    digest.update(f"{arr.dtype.str}{arr.shape}".encode())
    digest.update(memoryview(arr).cast("B"))
    return digest.hexdigest()


# ---------------------------------------------------------------------- limits


def _resolve_max_pixels(max_pixels: int | None) -> int:
    if max_pixels is None:
        raw = os.environ.get(MAX_PIXELS_ENV, "").strip()
        if not raw:
            return DEFAULT_MAX_PIXELS
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if value <= 0:
            raise ValueError(
                f"{MAX_PIXELS_ENV}={raw!r} is not a positive integer number of pixels; "
                f"unset it or set e.g. {MAX_PIXELS_ENV}={DEFAULT_MAX_PIXELS}"
            )
        return value
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int | np.integer):
        raise ValueError(f"max_pixels must be a positive int, got {max_pixels!r}")
    if max_pixels <= 0:
        raise ValueError(f"max_pixels must be a positive int, got {max_pixels}")
    return int(max_pixels)


def _check_size(width: int, height: int, source: str, limit: int) -> None:
    if width <= 0 or height <= 0:
        raise ImageError(source, f"zero-size image ({width}x{height} pixels)")
    if width * height > limit:
        raise ImageError(
            source,
            f"image is {width}x{height} = {width * height:,} pixels, more than the limit of "
            f"{limit:,}; pass load_image(..., max_pixels=N) or set {MAX_PIXELS_ENV} to allow it",
        )


# ---------------------------------------------------------------------- encoded inputs


def _load_path(src: str | os.PathLike, limit: int) -> np.ndarray:
    source = os.fsdecode(os.fspath(src))  # the path as the caller wrote it
    path = Path(source)
    try:
        if path.is_dir():
            raise ImageError(source, "is a directory, not an image file")
        with open(path, "rb") as fp:
            if os.fstat(fp.fileno()).st_size == 0:
                raise ImageError(source, "file is empty (0 bytes)")
            return _decode_stream(fp, source, limit)
    except FileNotFoundError:
        raise ImageError(source, "file not found") from None
    except PermissionError:
        raise ImageError(source, "permission denied") from None
    except IsADirectoryError:
        raise ImageError(source, "is a directory, not an image file") from None
    except ImageError:
        raise
    except OSError as e:
        raise ImageError(source, f"cannot read file ({e.strerror or e})") from e


def _load_file_object(fp: Any, limit: int) -> np.ndarray:
    source = "<file object>"
    if isinstance(fp, io.TextIOBase):
        raise ImageError(source, "file object is in text mode; open the file with 'rb'")
    try:
        seekable = bool(getattr(fp, "seekable", lambda: False)())
        if seekable:
            fp.seek(0)
            first = fp.read(1)
            fp.seek(0)
        else:  # PIL needs to seek; read non-seekable streams (pipes, sockets) into memory
            first = fp.read()
            fp = io.BytesIO(first)
    except (OSError, ValueError) as e:  # closed or unreadable stream
        raise ImageError(source, f"cannot read file object ({e})") from e
    if isinstance(first, str):
        raise ImageError(source, "file object returns text; open the file with 'rb'")
    if not first:
        raise ImageError(source, "empty input (0 bytes)")
    return _decode_stream(fp, source, limit)


def _decode_stream(fp: IO[bytes], source: str, limit: int) -> np.ndarray:
    """Open (header only), check the size, then decode; PIL errors become ImageError."""
    with _WARNINGS_LOCK, warnings.catch_warnings():
        # PIL warns (and only later errors) for images above MAX_IMAGE_PIXELS; refuse them.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            im = Image.open(fp)
        except UnidentifiedImageError:
            raise ImageError(
                source, "not an image PIL can read (unknown format or damaged header)"
            ) from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise ImageError(
                source, f"image is too large (PIL's decompression-bomb guard): {e}"
            ) from None
        except MemoryError:
            raise
        except Exception as e:  # PIL plugins raise many types on malformed headers
            raise ImageError(
                source, f"truncated or damaged image header ({type(e).__name__}: {e})"
            ) from e
    with im:
        if im.format in _REFUSED_FORMATS:
            raise ImageError(
                source, f"{im.format} files are not accepted: {_REFUSED_FORMATS[im.format]}"
            )
        return _pil_to_rgb(im, source, limit)


# ---------------------------------------------------------------------- PIL images


def _pil_to_rgb(im: Image.Image, source: str, limit: int) -> np.ndarray:
    width, height = im.size
    _check_size(width, height, source, limit)
    try:
        im.load()
    except MemoryError:
        raise
    except Exception as e:  # truncated data, bad CRC, decoder errors
        raise ImageError(
            source, f"truncated or corrupt image data ({type(e).__name__}: {e})"
        ) from e
    return _pil_pixels_to_rgb(_upright(im), source)


def _upright(im: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; ``im`` itself when there is none (no copy)."""
    try:
        if im.getexif().get(_ORIENTATION_TAG, 1) == 1:
            return im
        return ImageOps.exif_transpose(im)
    except Exception:  # a damaged EXIF block: keep the stored orientation, as viewers do
        return im


def _pil_pixels_to_rgb(im: Image.Image, source: str) -> np.ndarray:
    mode = im.mode
    transparent = "transparency" in im.info or (
        mode == "P" and im.palette is not None and im.palette.mode == "RGBA"
    )
    if mode in ("La", "RGBa"):  # premultiplied alpha
        arr = np.asarray(im)
        rgb = _premultiplied_over_white(arr[..., :-1], arr[..., -1])
    elif mode in ("RGBA", "LA", "PA") or (transparent and mode in ("1", "L", "P", "RGB")):
        rgba = np.asarray(im.convert("RGBA"))
        rgb = _over_white(rgba[..., :3], rgba[..., 3])
    elif mode == "RGB":
        rgb = np.asarray(im)
    elif mode in ("1", "L"):
        rgb = np.asarray(im.convert("L"))
    elif mode.startswith("I;16"):
        rgb = (np.asarray(im).astype(np.uint16) >> 8).astype(np.uint8)
    elif mode == "I":
        rgb = _scale_integers(np.asarray(im))
    elif mode == "F":
        rgb = _scale_pil_floats(np.asarray(im), source)
    else:
        try:
            rgb = np.asarray(im.convert("RGB"))
        except (ValueError, OSError) as e:
            raise ImageError(source, f"PIL mode {mode!r} cannot be converted to RGB ({e})") from e
    return _as_rgb_uint8(rgb)


# ---------------------------------------------------------------------- numpy arrays


def _array_to_rgb(arr: np.ndarray, source: str, limit: int) -> np.ndarray:
    if arr.dtype.kind not in "biuf":
        raise ImageError(
            source, f"unsupported dtype {arr.dtype}; use uint8, bool, another integer or float"
        )
    shape = arr.shape
    if arr.ndim == 3 and shape[2] not in (1, 3, 4):
        hint = (
            "; it looks channels-first (C, H, W): use arr.transpose(1, 2, 0)"
            if shape[0] in (1, 3, 4)
            else ""
        )
        raise ImageError(
            source,
            f"array has {shape[2]} channels (shape {shape}); expected (H, W, 1) gray, "
            f"(H, W, 3) RGB or (H, W, 4) RGBA{hint}",
        )
    if arr.ndim not in (2, 3):
        raise ImageError(
            source,
            f"array must have shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); got {shape}",
        )
    height, width = shape[:2]
    if arr.size == 0:
        raise ImageError(source, f"zero-size array (shape {shape})")
    _check_size(width, height, source, limit)
    if arr.ndim == 2:
        arr = arr[..., None]
    channels = arr.shape[2]
    if channels == 4:
        color = _array_values_to_uint8(arr[..., :3], source)
        alpha = _array_values_to_uint8(arr[..., 3], source)
        return _as_rgb_uint8(_over_white(color, alpha))
    return _as_rgb_uint8(_array_values_to_uint8(arr, source))


def _array_values_to_uint8(arr: np.ndarray, source: str) -> np.ndarray:
    kind = arr.dtype.kind
    if kind == "b":
        return arr.astype(np.uint8) * np.uint8(255)
    if arr.dtype == np.uint8:
        return arr
    if kind in "iu":
        return _scale_integers(arr)
    values = arr.astype(np.float32, copy=False)
    if not np.isfinite(values).all():
        what = "NaN" if np.isnan(values).any() else "inf"
        raise ImageError(source, f"float array contains {what}; fix or mask those pixels first")
    lo, hi = float(values.min()), float(values.max())
    if lo < 0.0 or hi > 1.0:
        raise ImageError(
            source,
            f"float array values must be in [0, 1], got range [{lo:g}, {hi:g}]; scale it first "
            "(e.g. arr / 255 for 0..255 values, (arr + 1) / 2 for -1..1)",
        )
    return np.rint(values * 255.0).astype(np.uint8)


# ---------------------------------------------------------------------- value rules


def _scale_integers(arr: np.ndarray) -> np.ndarray:
    """The integer rule: clip to 0..65535, then ``>> 8`` if any value is above 255."""
    info = np.iinfo(arr.dtype)
    clipped = np.clip(arr, max(info.min, 0), min(info.max, 65535)).astype(np.int32, copy=False)
    if clipped.size and int(clipped.max()) > 255:
        clipped = clipped >> 8
    return clipped.astype(np.uint8)


def _scale_pil_floats(arr: np.ndarray, source: str) -> np.ndarray:
    """The ``F`` rule: [0, 1] if max <= 1 (times 255), else clip to 0..255; round to nearest."""
    if not np.isfinite(arr).all():
        what = "NaN" if np.isnan(arr).any() else "inf"
        raise ImageError(source, f"float image (PIL mode 'F') contains {what}")
    values = arr.astype(np.float32, copy=False)
    if values.size and float(values.max()) <= 1.0:
        values = values * 255.0
    return np.rint(np.clip(values, 0.0, 255.0)).astype(np.uint8)


def _over_white(color: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Straight-alpha uint8 colour (H, W, C) over white -> uint8 (H, W, C), rounded."""
    a = alpha.astype(np.uint16)[..., None]
    c = color.astype(np.uint16)
    # c*a + 255*(255-a) <= 255*255, so uint16 holds it; +127 then //255 rounds to nearest
    # (255 is odd, so there are no ties).
    return ((c * a + 255 * (255 - a) + 127) // 255).astype(np.uint8)


def _premultiplied_over_white(color: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Premultiplied uint8 colour over white: ``min(c + 255 - a, 255)``."""
    c = color.astype(np.uint16) + (255 - alpha.astype(np.uint16))[..., None]
    return np.minimum(c, 255).astype(np.uint8)


def _as_rgb_uint8(arr: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, 1) or (H, W, 3) uint8 -> a writable C-contiguous (H, W, 3) uint8."""
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.shape[2] == 1:
        return np.repeat(arr, 3, axis=2)  # a new C-contiguous array
    out = np.ascontiguousarray(arr, dtype=np.uint8)
    if not out.flags.writeable:  # np.asarray(PIL image) is read-only
        out = out.copy()
    return out
