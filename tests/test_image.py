"""load_image: every PIL mode, EXIF orientation, every input kind, every bad input."""

from __future__ import annotations

import io
import os
import struct
import threading
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from grounded_sam.errors import ImageError
from grounded_sam.image import (
    DEFAULT_MAX_PIXELS,
    MAX_PIXELS_ENV,
    image_content_key,
    load_image,
)

# ---------------------------------------------------------------------- helpers


def assert_rgb(out: np.ndarray, shape: tuple[int, int] | None = None) -> None:
    """The invariants of every successful load."""
    assert isinstance(out, np.ndarray)
    assert out.dtype == np.uint8
    assert out.ndim == 3 and out.shape[2] == 3
    assert out.flags.c_contiguous and out.flags.writeable
    if shape is not None:
        assert out.shape[:2] == shape


def encode(im: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kwargs)
    return buf.getvalue()


def gray3(values) -> np.ndarray:
    g = np.asarray(values, dtype=np.uint8)
    return np.stack([g, g, g], axis=-1)


def over_white(color, alpha) -> np.ndarray:
    """The documented rule, in floating point: c * a/255 + 255 * (1 - a/255), rounded."""
    c = np.asarray(color, dtype=np.float64)
    a = np.asarray(alpha, dtype=np.float64)[..., None] / 255.0
    return np.floor(c * a + 255.0 * (1.0 - a) + 0.5).astype(np.uint8)


def png_with_declared_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels (its data is a few bytes)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 16))
        + chunk(b"IEND", b"")
    )


# ---------------------------------------------------------------------- PIL modes
# Each case: a PIL image built from known values, and the RGB the documented rules give.


def _mode_1():
    bits = np.array([[True, False, True]])
    return Image.fromarray(bits), gray3([[255, 0, 255]])


def _mode_L():
    v = np.array([[0, 17, 200, 255]], np.uint8)
    return Image.fromarray(v), gray3(v)


def _mode_LA():
    lum = np.array([[100, 100, 0, 30]], np.uint8)
    alpha = np.array([[255, 0, 128, 77]], np.uint8)
    im = Image.fromarray(np.stack([lum, alpha], -1), "LA")
    return im, over_white(gray3(lum), alpha)


def _mode_La():
    # premultiplied: stored luminance is already multiplied by alpha
    lum = np.array([[50, 0, 200]], np.uint8)
    alpha = np.array([[128, 0, 255]], np.uint8)
    im = Image.frombytes("La", (3, 1), np.stack([lum, alpha], -1).tobytes())
    expected = np.minimum(lum.astype(int) + 255 - alpha, 255)
    return im, gray3(expected)


PALETTE = [(10, 20, 30), (200, 100, 50), (0, 255, 0)]


def _palette_image() -> Image.Image:
    idx = np.array([[0, 1, 2, 1]], np.uint8)
    im = Image.fromarray(idx, "P")
    im.putpalette([c for rgb in PALETTE for c in rgb])
    return im


def _mode_P():
    return _palette_image(), np.array([[PALETTE[0], PALETTE[1], PALETTE[2], PALETTE[1]]], np.uint8)


def _mode_P_transparent_index():
    im = _palette_image()
    im.info["transparency"] = 1  # index 1 fully transparent -> white
    return im, np.array([[PALETTE[0], (255, 255, 255), PALETTE[2], (255, 255, 255)]], np.uint8)


def _mode_P_rgba_palette():
    im = Image.fromarray(np.array([[0, 1]], np.uint8), "P")
    im.putpalette([10, 20, 30, 255, 200, 100, 50, 51], rawmode="RGBA")
    expected = np.concatenate(
        [over_white([[[10, 20, 30]]], [[255]]), over_white([[[200, 100, 50]]], [[51]])], axis=1
    )
    return im, expected


def _mode_PA():
    im = Image.frombytes("PA", (2, 1), bytes([0, 255, 1, 100]))
    im.putpalette([c for rgb in PALETTE for c in rgb])
    expected = np.concatenate(
        [over_white([[PALETTE[0]]], [[255]]), over_white([[PALETTE[1]]], [[100]])], axis=1
    )
    return im, expected


def _mode_RGB():
    v = np.array([[[1, 2, 3], [250, 128, 0]]], np.uint8)
    return Image.fromarray(v), v


def _mode_RGB_colour_key():
    v = np.array([[[1, 2, 3], [250, 128, 0]]], np.uint8)
    im = Image.fromarray(v)
    im.info["transparency"] = (250, 128, 0)
    return im, np.array([[[1, 2, 3], [255, 255, 255]]], np.uint8)


def _mode_L_colour_key():
    im = Image.fromarray(np.array([[7, 9]], np.uint8))
    im.info["transparency"] = 7
    return im, gray3([[255, 9]])


def _mode_RGBA():
    color = np.array([[[255, 0, 0], [0, 0, 255], [10, 200, 90], [0, 0, 0]]], np.uint8)
    alpha = np.array([[255, 0, 128, 200]], np.uint8)
    im = Image.fromarray(np.concatenate([color, alpha[..., None]], -1), "RGBA")
    return im, over_white(color, alpha)


def _mode_RGBa():
    color = np.array([[[50, 100, 20], [0, 0, 0], [255, 10, 0]]], np.uint8)
    alpha = np.array([[128, 0, 255]], np.uint8)
    im = Image.frombytes("RGBa", (3, 1), np.concatenate([color, alpha[..., None]], -1).tobytes())
    expected = np.minimum(color.astype(int) + (255 - alpha.astype(int))[..., None], 255)
    return im, expected.astype(np.uint8)


def _mode_RGBX():
    v = np.array([[[1, 2, 3, 0], [250, 128, 0, 99]]], np.uint8)
    return Image.frombytes("RGBX", (2, 1), v.tobytes()), v[..., :3]


def _mode_CMYK():
    cmyk = np.array([[[0, 0, 0, 0], [255, 0, 0, 0], [0, 255, 255, 0], [0, 0, 0, 255]]], np.uint8)
    expected = np.array([[[255, 255, 255], [0, 255, 255], [255, 0, 0], [0, 0, 0]]], np.uint8)
    return Image.frombytes("CMYK", (4, 1), cmyk.tobytes()), expected


def _mode_YCbCr():
    ycc = np.array([[[76, 85, 255], [128, 128, 128], [200, 60, 90]]], np.float64)
    y, cb, cr = ycc[..., 0], ycc[..., 1] - 128, ycc[..., 2] - 128
    rgb = np.stack(  # JFIF (ITU-R BT.601 full range)
        [y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], axis=-1
    )
    im = Image.frombytes("YCbCr", (3, 1), ycc.astype(np.uint8).tobytes())
    return im, np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def _mode_LAB():
    # PIL stores L* scaled to 0..255 and a*, b* as signed bytes: a = b = 0 is neutral gray.
    lum8 = np.array([255, 128, 0])
    lab = np.stack([lum8, 0 * lum8, 0 * lum8], -1)[None].astype(np.uint8)
    lightness = lum8 * 100.0 / 255.0  # CIE L*
    y = np.where(lightness > 8, ((lightness + 16) / 116) ** 3, lightness / 903.3)
    srgb = np.where(y <= 0.0031308, 12.92 * y, 1.055 * y ** (1 / 2.4) - 0.055)
    return Image.frombytes("LAB", (3, 1), lab.tobytes()), gray3([np.rint(srgb * 255)])


def _mode_HSV():
    hsv = np.array([[[0, 255, 255], [85, 255, 255], [170, 255, 255], [0, 0, 200]]], np.uint8)
    expected = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [200, 200, 200]]], np.uint8)
    return Image.frombytes("HSV", (4, 1), hsv.tobytes()), expected


U16 = np.array([[0, 255, 256, 4660, 65535]], np.uint16)
U16_EXPECTED = gray3(U16 >> 8)  # [0, 0, 1, 18, 255]


def _mode_I16():
    return Image.fromarray(U16), U16_EXPECTED


def _mode_I16_raw(mode: str, dtype: str):
    def build():
        return Image.frombytes(mode, (5, 1), U16.astype(dtype).tobytes()), U16_EXPECTED

    return build


def _mode_I_8bit_values():
    v = np.array([[0, 100, 255]], np.int32)
    return Image.fromarray(v, "I"), gray3(v)  # max <= 255: used as is


def _mode_I_wide_values():
    v = np.array([[-5, 300, 70000, 65535, 4660]], np.int32)
    # clip to 0..65535 -> [0, 300, 65535, 65535, 4660]; max > 255 -> >> 8
    return Image.fromarray(v, "I"), gray3([[0, 1, 255, 255, 18]])


def _mode_F_unit_range():
    v = np.array([[0.0, 0.25, 0.5, 1.0, -0.5]], np.float32)
    # max <= 1: times 255, rounded; negatives clip to 0
    return Image.fromarray(v, "F"), gray3([[0, 64, 128, 255, 0]])


def _mode_F_wide_range():
    v = np.array([[-3.0, 2.4, 300.0, 127.6, 0.5]], np.float32)
    # max > 1: clip to 0..255, rounded
    return Image.fromarray(v, "F"), gray3([[0, 2, 255, 128, 0]])


MODE_CASES = {
    "1": _mode_1,
    "L": _mode_L,
    "LA": _mode_LA,
    "La": _mode_La,
    "P": _mode_P,
    "P+transparent-index": _mode_P_transparent_index,
    "P+rgba-palette": _mode_P_rgba_palette,
    "PA": _mode_PA,
    "RGB": _mode_RGB,
    "RGB+colour-key": _mode_RGB_colour_key,
    "L+colour-key": _mode_L_colour_key,
    "RGBA": _mode_RGBA,
    "RGBa": _mode_RGBa,
    "RGBX": _mode_RGBX,
    "CMYK": _mode_CMYK,
    "YCbCr": _mode_YCbCr,
    "LAB": _mode_LAB,
    "HSV": _mode_HSV,
    "I;16": _mode_I16,
    "I;16L": _mode_I16_raw("I;16L", "<u2"),
    "I;16B": _mode_I16_raw("I;16B", ">u2"),
    "I;16N": _mode_I16_raw("I;16N", "=u2"),
    "I-8bit-values": _mode_I_8bit_values,
    "I-wide-values": _mode_I_wide_values,
    "F-unit-range": _mode_F_unit_range,
    "F-wide-range": _mode_F_wide_range,
}


@pytest.mark.parametrize("case", MODE_CASES)
def test_pil_mode_to_rgb(case):
    im, expected = MODE_CASES[case]()
    mode = im.mode
    out = load_image(im)
    assert_rgb(out, expected.shape[:2])
    # PIL's YCbCr->RGB is fixed-point and its LAB->RGB goes through XYZ in 8 bits
    tol = {"YCbCr": 1, "LAB": 2}.get(mode, 0)
    np.testing.assert_allclose(out.astype(int), expected.astype(int), atol=tol, rtol=0)
    assert im.mode == mode  # the caller's image is not converted in place


# Modes that a lossless file format stores as they are: decoding the file gives the same RGB.
FILE_CASES = [
    ("1", "PNG"),
    ("L", "PNG"),
    ("LA", "PNG"),
    ("P", "PNG"),
    ("P+transparent-index", "PNG"),
    ("P+transparent-index", "GIF"),
    ("P+rgba-palette", "PNG"),
    ("RGB", "PNG"),
    ("RGB+colour-key", "PNG"),
    ("L+colour-key", "PNG"),
    ("RGBA", "PNG"),
    ("RGBA", "TIFF"),
    ("CMYK", "TIFF"),
    ("LAB", "TIFF"),
    ("I;16", "PNG"),
    ("I;16", "TIFF"),
    ("I;16B", "TIFF"),
    ("I-wide-values", "TIFF"),
    ("F-unit-range", "TIFF"),
    ("F-wide-range", "TIFF"),
]


@pytest.mark.parametrize(("case", "fmt"), FILE_CASES, ids=[f"{c}-{f}" for c, f in FILE_CASES])
def test_encoded_mode_to_rgb(case, fmt):
    im, expected = MODE_CASES[case]()
    data = encode(
        im, fmt, **({"transparency": im.info["transparency"]} if "transparency" in im.info else {})
    )
    with Image.open(io.BytesIO(data)) as reopened:  # the file really holds that mode
        assert reopened.mode == im.mode
    out = load_image(data)
    assert_rgb(out, expected.shape[:2])
    np.testing.assert_array_equal(out, load_image(im))
    tol = {"LAB": 2}.get(im.mode, 0)
    np.testing.assert_allclose(out.astype(int), expected.astype(int), atol=tol, rtol=0)


def test_float_pil_image_with_nan_is_refused():
    im = Image.fromarray(np.array([[0.5, np.nan]], np.float32), "F")
    with pytest.raises(ImageError, match=r"<PIL\.Image>.*NaN"):
        load_image(im)


# ---------------------------------------------------------------------- EXIF orientation

STORED = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 13  # H=2, W=3, distinct pixels

# EXIF orientation -> how the stored pixels must be moved to be upright (numpy, independent of PIL)
ORIENTED = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1, :],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, k=-1),  # rotate 90 degrees clockwise
    7: lambda a: np.rot90(a.transpose(1, 0, 2), k=2),
    8: lambda a: np.rot90(a, k=1),  # rotate 90 degrees counter-clockwise
}


def _with_orientation(im: Image.Image, fmt: str, orientation: int, **kwargs) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(im, fmt, exif=exif, **kwargs)


@pytest.mark.parametrize("orientation", sorted(ORIENTED))
def test_exif_orientation_png(orientation):
    data = _with_orientation(Image.fromarray(STORED), "PNG", orientation)
    out = load_image(data)
    expected = ORIENTED[orientation](STORED)
    assert_rgb(out, expected.shape[:2])
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_jpeg(orientation):
    # 16x32 image of four flat 16x8 colour blocks: lossy JPEG keeps block colours within a few levels
    colors = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0]], np.uint8)
    stored = np.repeat(colors[None, :, :], 8, axis=1).repeat(16, axis=0)  # (16, 32, 3)
    data = _with_orientation(
        Image.fromarray(stored), "JPEG", orientation, quality=95, subsampling=0
    )
    out = load_image(data)
    expected = ORIENTED[orientation](stored)
    assert_rgb(out, expected.shape[:2])
    assert np.abs(out.astype(int) - expected.astype(int)).mean() < 4
    if orientation == 6:  # stored top-left (red) ends up top-right
        assert out.shape == (32, 16, 3)
        np.testing.assert_allclose(out[1, -2].astype(int), [255, 0, 0], atol=12)
    if orientation == 8:  # stored top-left (red) ends up bottom-left
        np.testing.assert_allclose(out[-2, 1].astype(int), [255, 0, 0], atol=12)


def test_exif_orientation_of_pil_input_is_applied_without_mutating_it():
    data = _with_orientation(Image.fromarray(STORED), "PNG", 6)
    with Image.open(io.BytesIO(data)) as im:
        out = load_image(im)
        assert im.size == (3, 2)
        assert im.getexif().get(0x0112) == 6
    np.testing.assert_array_equal(out, np.rot90(STORED, k=-1))


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")
def test_damaged_exif_keeps_the_stored_orientation():
    damaged = b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff garbage"
    data = encode(Image.fromarray(np.full((4, 6, 3), 200, np.uint8)), "JPEG", exif=damaged)
    out = load_image(data)
    assert_rgb(out, (4, 6))


# ---------------------------------------------------------------------- input kinds

PIXELS = np.random.default_rng(7).integers(0, 256, size=(5, 7, 3), dtype=np.uint8)


class _NonSeekable(io.RawIOBase):
    """A pipe-like binary stream: readable, not seekable."""

    def __init__(self, data: bytes):
        self._buf = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, b) -> int:
        chunk = self._buf.read(len(b))
        b[: len(chunk)] = chunk
        return len(chunk)


@pytest.fixture
def png_file(tmp_path) -> Path:
    path = tmp_path / "pixels.png"
    path.write_bytes(encode(Image.fromarray(PIXELS), "PNG"))
    return path


INPUT_KINDS = {
    "str": lambda p: str(p),
    "pathlib": lambda p: p,
    "bytes": lambda p: p.read_bytes(),
    "bytearray": lambda p: bytearray(p.read_bytes()),
    "memoryview": lambda p: memoryview(p.read_bytes()),
    "BytesIO": lambda p: io.BytesIO(p.read_bytes()),
    "BytesIO-not-at-start": lambda p: _seek_to_end(io.BytesIO(p.read_bytes())),
    "non-seekable-stream": lambda p: io.BufferedReader(_NonSeekable(p.read_bytes())),
    "PIL-lazy": lambda p: Image.open(p),
    "PIL-loaded": lambda p: Image.fromarray(PIXELS),
    "ndarray": lambda p: PIXELS.copy(),
}


def _seek_to_end(f):
    f.seek(0, os.SEEK_END)
    return f


@pytest.mark.parametrize("kind", INPUT_KINDS)
def test_input_kinds_give_the_same_pixels(kind, png_file):
    out = load_image(INPUT_KINDS[kind](png_file))
    assert_rgb(out, (5, 7))
    np.testing.assert_array_equal(out, PIXELS)


def test_open_binary_file_object(png_file):
    with open(png_file, "rb") as f:
        out = load_image(f)
    np.testing.assert_array_equal(out, PIXELS)


def test_result_is_a_copy_of_the_input_array():
    arr = PIXELS.copy()
    out = load_image(arr)
    assert not np.shares_memory(out, arr)
    out[0, 0] = 0
    np.testing.assert_array_equal(arr, PIXELS)


def _int_rule(v: np.ndarray) -> np.ndarray:
    v = np.clip(v.astype(np.int64), 0, 65535)
    return (v >> 8 if v.max() > 255 else v).astype(np.uint8)


GRAY = np.array([[0, 1, 127], [128, 254, 255]], np.uint8)
ARRAY_CASES = {
    "uint8 (H,W)": (GRAY, gray3(GRAY)),
    "uint8 (H,W,1)": (GRAY[..., None], gray3(GRAY)),
    "uint8 (H,W,3)": (PIXELS, PIXELS),
    "uint8 (H,W,3) non-contiguous": (PIXELS[:, ::-1], PIXELS[:, ::-1]),
    "uint8 (H,W,3) fortran order": (np.asfortranarray(PIXELS), PIXELS),
    "uint8 (H,W,4)": (
        np.concatenate([PIXELS, np.full((5, 7, 1), 100, np.uint8)], -1),
        over_white(PIXELS, np.full((5, 7), 100)),
    ),
    "bool (H,W)": (GRAY > 127, gray3(np.where(GRAY > 127, 255, 0))),
    "uint16 wide": (GRAY.astype(np.uint16) * 257, gray3(GRAY)),  # v*257 >> 8 == v
    "uint16 8-bit values": (GRAY.astype(np.uint16), gray3(GRAY)),
    "int32 negatives and wide": (
        np.array([[-7, 300], [70000, 65535]], np.int32),
        gray3([[0, 1], [255, 255]]),
    ),
    "int64 8-bit values": (GRAY.astype(np.int64), gray3(GRAY)),
    "int8": (np.array([[-128, 5], [127, 0]], np.int8), gray3([[0, 5], [127, 0]])),
    "uint32 huge": (np.array([[2**32 - 1, 512]], np.uint32), gray3([[255, 2]])),
    "uint16 (H,W,3)": (
        PIXELS.astype(np.uint16) * 256 + 255,
        PIXELS,
    ),
    "float32 [0,1]": (
        np.array([[0.0, 0.25], [0.5, 1.0]], np.float32),
        gray3([[0, 64], [128, 255]]),
    ),
    "float64 (H,W,3)": (PIXELS / 255.0, PIXELS),
    "float16 [0,1]": (np.array([[0.0, 1.0]], np.float16), gray3([[0, 255]])),
    "float32 (H,W,4)": (
        np.dstack([PIXELS / 255.0, np.full((5, 7), 0.4)]).astype(np.float32),
        over_white(PIXELS, np.full((5, 7), np.rint(0.4 * 255))),
    ),
}


@pytest.mark.parametrize("case", ARRAY_CASES)
def test_array_variants(case):
    arr, expected = ARRAY_CASES[case]
    out = load_image(arr)
    assert_rgb(out, expected.shape[:2])
    np.testing.assert_array_equal(out, expected)


def test_integer_rule_helper_matches_table():
    # the table above encodes the rule by hand; check it against the rule written as code
    v = np.array([[-7, 300], [70000, 65535]], np.int32)
    np.testing.assert_array_equal(gray3(_int_rule(v)), ARRAY_CASES["int32 negatives and wide"][1])


def test_animated_images_give_the_first_frame():
    frames = [Image.new("RGB", (4, 4), c) for c in [(255, 0, 0), (0, 0, 255), (0, 255, 0)]]
    for fmt in ["GIF", "PNG"]:  # PNG with save_all writes an APNG
        data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=50)
        with Image.open(io.BytesIO(data)) as im:
            assert im.n_frames == 3
        out = load_image(data)
        assert_rgb(out, (4, 4))
        assert (out == [255, 0, 0]).all()


# ---------------------------------------------------------------------- bad inputs


def _bad_path_cases(tmp: Path) -> dict[str, tuple[object, str, str]]:
    """name -> (input, source expected in the message, reason expected in the message)."""
    good_jpeg = encode(Image.fromarray(np.tile(PIXELS, (8, 8, 1))), "JPEG", quality=90)
    good_png = encode(Image.fromarray(np.tile(PIXELS, (8, 8, 1))), "PNG")
    files = {
        "empty.png": b"",
        "notes.txt": b"this is a text file, not an image\n",
        "cut.jpg": good_jpeg[: len(good_jpeg) // 2],
        "cut.png": good_png[: len(good_png) // 2],
        "header-only.png": good_png[:20],
        "figure.eps": b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n",
    }
    for name, data in files.items():
        (tmp / name).write_bytes(data)
    (tmp / "folder.png").mkdir()
    return {
        "missing file": (tmp / "nope.png", "nope.png", "file not found"),
        "missing file str": (str(tmp / "nope.jpg"), "nope.jpg", "file not found"),
        "directory": (tmp / "folder.png", "folder.png", "directory"),
        "empty file": (tmp / "empty.png", "empty.png", "empty"),
        "text file": (tmp / "notes.txt", "notes.txt", "not an image"),
        "truncated JPEG": (tmp / "cut.jpg", "cut.jpg", "truncated"),
        "truncated PNG": (tmp / "cut.png", "cut.png", "truncated"),
        "truncated PNG header": (
            tmp / "header-only.png",
            "header-only.png",
            "truncated or damaged image header",
        ),
        "EPS": (tmp / "figure.eps", "figure.eps", "EPS"),
        "truncated JPEG bytes": (good_jpeg[:-300], "<bytes>", "truncated"),
        "truncated PNG bytes": (good_png[:-100], "<bytes>", "truncated"),
        "empty bytes": (b"", "<bytes>", "empty"),
        "garbage bytes": (b"\x00\x01garbage" * 10, "<bytes>", "not an image"),
        "empty file object": (io.BytesIO(), "<file object>", "empty"),
        "text file object": (io.StringIO("abc"), "<file object>", "text mode"),
        "truncated JPEG file object": (io.BytesIO(good_jpeg[:-300]), "<file object>", "truncated"),
    }


BAD_ARRAYS = {
    "zero-size (0, 5, 3)": (np.zeros((0, 5, 3), np.uint8), "zero-size"),
    "zero-size (5, 0)": (np.zeros((5, 0), np.uint8), "zero-size"),
    "ndim 1": (np.zeros(5, np.uint8), "shape"),
    "ndim 4": (np.zeros((1, 4, 4, 3), np.uint8), "shape"),
    "2 channels": (np.zeros((4, 4, 2), np.uint8), "2 channels"),
    "channels-first": (np.zeros((3, 8, 9), np.uint8), "channels-first"),
    "float above 1": (np.array([[0.0, 255.0]], np.float32), "[0, 1]"),
    "float below 0": (np.array([[-0.5, 0.5]], np.float64), "[0, 1]"),
    "NaN": (np.array([[0.5, np.nan]], np.float32), "NaN"),
    "inf": (np.array([[0.5, np.inf]], np.float32), "inf"),
    "complex dtype": (np.zeros((2, 2), np.complex64), "dtype"),
    "object dtype": (np.array([[None, 1]], dtype=object), "dtype"),
    "string dtype": (np.array([["a", "b"]]), "dtype"),
}


def test_bad_inputs_raise_image_error_naming_source_and_reason(tmp_path):
    for name, (src, source, reason) in _bad_path_cases(tmp_path).items():
        with pytest.raises(ImageError) as info:
            load_image(src)
        msg = str(info.value)
        assert source in msg, (name, msg)
        assert reason in msg, (name, msg)
        assert source in info.value.source, name
        assert info.value.reason and info.value.reason in msg


@pytest.mark.parametrize("case", BAD_ARRAYS)
def test_bad_arrays(case):
    arr, reason = BAD_ARRAYS[case]
    with pytest.raises(ImageError) as info:
        load_image(arr)
    msg = str(info.value)
    assert "<ndarray>" in msg and reason in msg, msg
    assert info.value.source == "<ndarray>"


@pytest.mark.parametrize(
    ("src", "source"),
    [(5, "<int>"), ([[1, 2]], "<list>"), (None, "<NoneType>")],
)
def test_unsupported_types(src, source):
    with pytest.raises(ImageError, match=f"{source}.*unsupported input type"):
        load_image(src)


def test_zero_size_pil_image():
    with pytest.raises(ImageError, match=r"<PIL\.Image>.*zero-size"):
        load_image(Image.new("RGB", (0, 3)))


# ---------------------------------------------------------------------- size limits


@pytest.mark.parametrize(
    "make",
    [lambda d, p: d, lambda d, p: p, lambda d, p: Image.fromarray(PIXELS), lambda d, p: PIXELS],
)
def test_max_pixels_refuses_every_kind_of_input(make, png_file):
    src = make(png_file.read_bytes(), png_file)
    assert_rgb(load_image(src, max_pixels=35))  # 5 x 7 = 35 pixels: exactly at the limit
    src = make(png_file.read_bytes(), png_file)
    with pytest.raises(ImageError, match=r"7x5 = 35 pixels, more than the limit of 34"):
        load_image(src, max_pixels=34)


@pytest.mark.parametrize(
    ("width", "height"),
    [
        (9000, 9000),  # above our default limit, below PIL's warning threshold
        (10000, 10000),  # above PIL's DecompressionBombWarning threshold
        (100_000, 100_000),  # above PIL's DecompressionBombError threshold
    ],
)
def test_header_declared_huge_png_is_refused_before_decoding(width, height):
    data = png_with_declared_size(width, height)
    assert len(data) < 200
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing may leak out as a warning either
        with pytest.raises(ImageError, match=r"<bytes>.*(pixels|too large)"):
            load_image(data)


def test_header_declared_huge_png_on_disk(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_with_declared_size(30_000, 30_000))
    with pytest.raises(ImageError, match="bomb.png.*too large"):
        load_image(path)


def test_default_limit_lets_a_header_through_below_it():
    # 8192 x 8192 is exactly the default; the size check passes and decoding then finds the
    # pixel data missing, so the refusal is "truncated", not "too many pixels"
    assert DEFAULT_MAX_PIXELS == 8192 * 8192
    with pytest.raises(ImageError, match="truncated"):
        load_image(png_with_declared_size(8192, 8192))


def test_env_var_sets_the_default_limit(monkeypatch):
    monkeypatch.setenv(MAX_PIXELS_ENV, "34")
    with pytest.raises(ImageError, match="limit of 34"):
        load_image(PIXELS)
    assert_rgb(load_image(PIXELS, max_pixels=35))  # an explicit argument wins
    monkeypatch.setenv(MAX_PIXELS_ENV, "35")
    assert_rgb(load_image(PIXELS))


@pytest.mark.parametrize("value", ["abc", "0", "-5", "1.5"])
def test_bad_env_var_is_a_clear_error(monkeypatch, value):
    monkeypatch.setenv(MAX_PIXELS_ENV, value)
    with pytest.raises(ValueError, match=MAX_PIXELS_ENV):
        load_image(PIXELS)


@pytest.mark.parametrize("value", [0, -1, 2.5, True])
def test_bad_max_pixels_argument(value):
    with pytest.raises(ValueError, match="max_pixels"):
        load_image(PIXELS, max_pixels=value)


def test_global_pil_and_warning_state_is_untouched(tmp_path):
    before = (ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS, list(warnings.filters))
    bomb = png_with_declared_size(10000, 10000)
    good = encode(Image.fromarray(PIXELS), "PNG")
    cut = encode(Image.fromarray(np.tile(PIXELS, (8, 8, 1))), "JPEG")[:-300]
    errors: list[BaseException] = []

    def work():
        for _ in range(20):
            for src in (bomb, cut):
                try:
                    load_image(src)
                except ImageError:
                    pass
                else:  # pragma: no cover - would be a bug
                    errors.append(AssertionError("bad input was accepted"))
            np.testing.assert_array_equal(load_image(good), PIXELS)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    after = (ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS, list(warnings.filters))
    assert after == before


# ---------------------------------------------------------------------- content key


def test_image_content_key():
    key = image_content_key(PIXELS)
    assert len(key) == 40 and int(key, 16) >= 0
    assert image_content_key(PIXELS.copy()) == key
    assert image_content_key(np.asfortranarray(PIXELS)) == key  # layout does not matter
    changed = PIXELS.copy()
    changed[4, 6, 2] ^= 1
    assert image_content_key(changed) != key
    flat = PIXELS.reshape(7, 5, 3)  # same bytes, other shape
    assert image_content_key(flat) != key
    assert image_content_key(PIXELS.astype(np.int8)) != key  # same bytes, other dtype
    assert image_content_key(load_image(PIXELS)) == key


def test_as_rgb_passes_a_decoded_image_on_and_loads_anything_else(tmp_path):
    from grounded_sam.image import as_rgb

    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    assert as_rgb(rgb) is rgb  # already RGB uint8 (H, W, 3): no copy, no second decode
    flipped = rgb[:, ::-1]  # not C-contiguous: load_image makes the contiguous copy
    out = as_rgb(flipped)
    assert out.flags.c_contiguous and np.array_equal(out, flipped)
    gray = rgb[..., 0]
    assert as_rgb(gray).shape == (5, 7, 3)
    path = tmp_path / "a.png"
    Image.fromarray(rgb).save(path)
    assert np.array_equal(as_rgb(path), rgb)
    with pytest.raises(ImageError):
        as_rgb(np.zeros((0, 4, 3), np.uint8))


def test_as_rgb_checks_the_size_of_an_array_it_passes_on():
    from grounded_sam.image import as_rgb

    rgb = np.zeros((10, 10, 3), np.uint8)
    assert as_rgb(rgb, max_pixels=100) is rgb
    with pytest.raises(ImageError, match="more than the limit of 99"):
        as_rgb(rgb, max_pixels=99)
