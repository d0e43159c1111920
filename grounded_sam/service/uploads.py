"""Uploaded files -> RGB arrays: size bound, format allow-list from the content, ``load_image``.

The web app receives every image as a file and decodes it here, once, with
:func:`grounded_sam.load_image`, so the page, the API and the library see the same pixels
(transparency over white, 16-bit scaled, palette expanded, first frame of a GIF).

Only formats whose decoders are built into Pillow are accepted: JPEG, PNG, WebP, BMP, TIFF and
GIF. The format is read from the file's first bytes (its signature), not from its name, and
anything else is refused before Pillow opens the file, so no other Pillow plugin ever parses
an upload: EPS / PostScript (rendered by running Ghostscript), PDF, SVG and the rest.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from grounded_sam.errors import ImageError
from grounded_sam.service.limits import Limits, check_at_most

ALLOWED_FORMATS = ("JPEG", "PNG", "WebP", "BMP", "TIFF", "GIF")

# (signature at offset 0, format); WebP is RIFF....WEBP, checked separately.
_SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),  # BigTIFF
    (b"MM\x00+", "TIFF"),
)
# Signatures of formats people try, to name them in the refusal.
_KNOWN_REFUSED = (
    (b"%!PS", "PostScript/EPS (rendering it runs Ghostscript)"),
    (b"\xc5\xd0\xd3\xc6", "EPS (rendering it runs Ghostscript)"),
    (b"%PDF", "PDF"),
    (b"<svg", "SVG"),
    (b"<?xml", "XML/SVG"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"8BPS", "Photoshop PSD"),
    (b"PK\x03\x04", "ZIP"),
)


def sniff_format(head: bytes) -> str | None:
    """The allowed format whose signature ``head`` (a file's first 16 bytes) starts with."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    for signature, name in _SIGNATURES:
        if head.startswith(signature):
            return name
    return None


def _refusal(head: bytes) -> str:
    accepted = ", ".join(ALLOWED_FORMATS)
    for signature, name in _KNOWN_REFUSED:
        if head.lstrip().startswith(signature):
            return f"{name} files are not accepted; convert it to PNG or JPEG ({accepted})"
    return f"not a {accepted} file (judged from its content, not its name); convert it to PNG"


def upload_name(path: str | os.PathLike | None, default: str = "image.png") -> str:
    """The uploaded file's own name, for the downloads (COCO ``file_name``,
    ``masks/<name>.png``): the base name of ``path`` (Gradio keeps the uploaded name on its
    temporary copy), with characters that are unsafe in a file name replaced by ``_``;
    ``default`` when there is none (no path, or only dots)."""
    if path is None:
        return default
    name = Path(str(path).replace("\\", "/")).name
    name = "".join("_" if c in '<>:"|?*' or ord(c) < 32 else c for c in name).strip()
    return default if not name.strip(".") else name


def read_upload(path: str | os.PathLike, limits: Limits, *, name: str | None = None) -> np.ndarray:
    """Decode one uploaded file with :func:`grounded_sam.load_image`: RGB uint8 (H, W, 3).

    Args:
        path: the uploaded file (a temporary copy the web framework made).
        limits: ``max_upload_mb`` bounds the file's size and ``max_pixels`` the image's
            width x height (read from the header, before any pixel is decoded).
        name: what to call the file in messages (default: its base name).

    Raises:
        ImageError: empty, too large, a format outside :data:`ALLOWED_FORMATS`, or not
            decodable; the message says which and what to do.
        LimitExceeded: the file is bigger than the upload limit.
    """
    path = Path(path)
    label = name or path.name
    try:
        size = path.stat().st_size
        with open(path, "rb") as fp:
            head = fp.read(16)
    except OSError as e:
        raise ImageError(label, f"cannot read the uploaded file ({e.strerror or e})") from e
    check_at_most(f"the upload {label!r} (bytes)", size, limits.max_upload_bytes, "max_upload_mb")
    if size == 0:
        raise ImageError(label, "the file is empty (0 bytes)")
    if sniff_format(head) is None:
        raise ImageError(label, _refusal(head))
    from grounded_sam.image import load_image

    try:
        return load_image(path, max_pixels=limits.max_pixels)
    except ImageError as e:  # name the upload, not the server's temporary path
        raise ImageError(label, e.reason) from None
