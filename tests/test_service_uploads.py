"""Uploaded files: size bound, format judged from the content, decoded by gs.load_image."""

from __future__ import annotations

import io

import numpy as np
import pytest
from _images import blob_image
from PIL import Image

import grounded_sam as gs
from grounded_sam.errors import ImageError
from grounded_sam.service.limits import LimitExceeded, Limits
from grounded_sam.service.uploads import ALLOWED_FORMATS, read_upload, sniff_format


def encoded(fmt: str, arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF"])
def test_allowed_formats_decode_as_load_image_does(tmp_path, fmt):
    data = encoded(fmt, blob_image(20, 30))
    assert sniff_format(data[:16]) in ALLOWED_FORMATS
    path = tmp_path / "upload.bin"  # the name says nothing
    path.write_bytes(data)
    np.testing.assert_array_equal(read_upload(path, Limits()), gs.load_image(data))


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "the file is empty"),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n", "PostScript/EPS .*Ghostscript"),
        (b"  %!PS\n", "PostScript/EPS"),
        (b"%PDF-1.7\n", "PDF files are not accepted"),
        (b"P6\n2 2\n255\n" + bytes(12), "not a JPEG, PNG, WebP, BMP, TIFF, GIF file"),
        (b"\x89PNG\r\n\x1a\n" + bytes(30), "cannot load image photo.png: .*damaged"),
    ],
)
def test_refusals_name_the_upload_and_the_reason(tmp_path, content, message):
    path = tmp_path / "photo.png"
    path.write_bytes(content)
    with pytest.raises(ImageError, match=message) as info:
        read_upload(path, Limits())
    assert str(tmp_path) not in str(info.value)


def test_size_and_pixel_limits(tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(encoded("PNG", np.zeros((100, 200, 3), np.uint8)))
    with pytest.raises(ImageError, match="200x100 = 20,000 pixels, more than the limit of 19,999"):
        read_upload(path, Limits(max_pixels=19_999))
    path.write_bytes(path.read_bytes() + bytes(1_000_001))
    with pytest.raises(LimitExceeded, match="upload 'big.png' \\(bytes\\) is 1,00"):
        read_upload(path, Limits(max_upload_mb=1))


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/tmp/gradio/3f2a/holiday photo.JPG", "holiday photo.JPG"),
        ("C:\\Users\\me\\cat.png", "cat.png"),
        ("/tmp/gradio/x/a:b?.png", "a_b_.png"),
        (None, "image.png"),
        ("/tmp/gradio/..", "image.png"),
    ],
)
def test_upload_name_keeps_the_uploaded_file_name(path, name):
    from grounded_sam.service import upload_name

    assert upload_name(path) == name


def test_downloads_are_named_after_the_upload(tmp_path):
    import json
    import zipfile

    from grounded_sam.service import export_result, upload_name
    from grounded_sam.types import Detections

    upload = tmp_path / "gradio" / "abc" / "my dog.jpg"
    masks = np.zeros((1, 8, 10), bool)
    masks[0, 2:5, 3:7] = True
    dets = Detections(
        xyxy=[[3, 2, 7, 5]], scores=[0.9], phrases=["dog"], class_id=[0], masks=masks,
        image_size=(8, 10),
    )  # fmt: skip
    coco_path, zip_path = export_result(
        dets, ["dog"], tmp_path / "out", file_name=upload_name(upload)
    )
    assert json.loads(coco_path.read_text())["images"][0]["file_name"] == "my dog.jpg"
    with zipfile.ZipFile(zip_path) as zf:
        assert sorted(zf.namelist()) == ["masks/my dog.json", "masks/my dog.png"]
