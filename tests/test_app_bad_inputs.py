"""Bad inputs against the web API: every one ends in a result or a clear refusal.

``python app.py --tiny-random`` runs once for this module with small request limits
(``GROUNDED_SAM_WEB_*``), and each case sends one bad input through ``gradio_client`` (or,
for values gradio_client cannot encode such as NaN, through the same HTTP API by hand). The
client must receive the reason, never Gradio's generic "upstream Gradio app has raised an
exception", and the server must log a refusal as one line, without a traceback. Every file
is generated here; none is checked in.
"""

from __future__ import annotations

import io
import json
import zlib

import numpy as np
import pytest
from _app_server import AppServer
from _images import blob_image
from PIL import Image

pytest.importorskip("gradio_client")
import httpx  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

GENERIC = "upstream Gradio app has raised an exception"
LIMITS = {
    "GROUNDED_SAM_WEB_MAX_UPLOAD_MB": "1",
    "GROUNDED_SAM_WEB_MAX_PIXELS": "1000000",
    "GROUNDED_SAM_WEB_MAX_POINTS_PER_SIDE": "8",
    "GROUNDED_SAM_WEB_MAX_POINTS": "4",
    "GROUNDED_SAM_WEB_MAX_CLASSES": "5",
    "GROUNDED_SAM_WEB_MAX_PROMPT_CHARS": "200",
    "GROUNDED_SAM_WEB_MAX_AMG_WORK": "32",
}
H, W = 60, 80


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    """This module's own server: the tiny random models with small limits."""
    log = tmp_path_factory.mktemp("app") / "app.log"
    with AppServer(log, env=LIMITS) as server:
        yield server


@pytest.fixture(scope="module")
def client(app_server) -> Client:
    return Client(app_server.url, verbose=False)


# ---------------------------------------------------------------------- generated files


def png_bytes(arr: np.ndarray | Image.Image, fmt: str = "PNG", **kw) -> bytes:
    im = arr if isinstance(arr, Image.Image) else Image.fromarray(arr)
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def huge_png(width: int, height: int) -> bytes:
    """A valid gray PNG of ``width`` x ``height`` zeros, a few KB (IDAT of zlib'd zeros)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    raw = zlib.compress(bytes(width + 1) * height, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


GOOD = png_bytes(blob_image(H, W))
FILES: dict[str, tuple[bytes, str | None]] = {
    # name: (content, expected message; None = a result)
    "empty.png": (b"", "empty"),
    "text.png": (b"hello, this is text\n", "not a JPEG, PNG"),
    "postscript.eps": (
        b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 9 9\nshowpage\n",
        "Ghostscript",
    ),
    "binary.eps": (b"\xc5\xd0\xd3\xc6" + bytes(40), "Ghostscript"),
    "eps-named.png": (b"%!PS-Adobe-3.0\nshowpage\n", "Ghostscript"),
    "doc.pdf": (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", "PDF"),
    "vector.svg": (b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>', "SVG"),
    "truncated.png": (GOOD[: len(GOOD) // 2], "truncated or corrupt"),
    "bad-header.png": (b"\x89PNG\r\n\x1a\n" + bytes(64), "damaged"),
    "huge.png": (huge_png(2000, 1000), "more than the limit of 1,000,000"),
    "nan.tiff": (png_bytes(Image.fromarray(np.full((H, W), np.nan, np.float32)), "TIFF"), "NaN"),
    "good.jpg": (png_bytes(blob_image(H, W), "JPEG"), None),
    "good.bmp": (png_bytes(blob_image(H, W), "BMP"), None),
    "good.webp": (png_bytes(blob_image(H, W), "WEBP", lossless=True), None),
    "good.tiff": (png_bytes(blob_image(H, W), "TIFF"), None),
    "cmyk.jpg": (png_bytes(Image.fromarray(blob_image(H, W)).convert("CMYK"), "JPEG"), None),
    "png-named.gif": (GOOD, None),  # the content decides, not the name
}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("bad")
    out = {}
    for name, (content, _) in FILES.items():
        (folder / name).write_bytes(content)
        out[name] = str(folder / name)
    frames = [Image.fromarray(blob_image(H, W, seed=s)) for s in range(3)]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:])
    out["animated.gif"] = str(folder / "animated.gif")
    (folder / "over-limit.png").write_bytes(GOOD + bytes(1_200_000))  # valid PNG, then padding
    out["over-limit.png"] = str(folder / "over-limit.png")
    return out


def refused(call, *args, **kwargs) -> str:
    """The message of the AppError ``call`` raises (fails on success or a generic message)."""
    with pytest.raises(AppError) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert GENERIC not in message
    return message


def check_detections(result: dict) -> None:
    h, w = result["image_size"]
    for det in result["detections"]:
        x1, y1, x2, y2 = det["xyxy"]
        assert 0 <= x1 <= x2 <= w and 0 <= y1 <= y2 <= h


# ---------------------------------------------------------------------- files


@pytest.mark.parametrize("name", list(FILES))
def test_uploaded_files(client, files, name):
    expected = FILES[name][1]
    kwargs = dict(prompt="ball", box_threshold=0.0, api_name="/detect_segment")
    if expected is None:
        check_detections(client.predict(image=handle_file(files[name]), **kwargs))
    else:
        message = refused(client.predict, image=handle_file(files[name]), **kwargs)
        assert expected in message
        assert "/tmp" not in message  # the upload's name, not the server's temporary path


def test_animated_gif_uses_its_first_frame(client, files):
    result = client.predict(
        image=handle_file(files["animated.gif"]), points=[[5, 5]], labels=[1],
        api_name="/segment_points",
    )  # fmt: skip
    assert result["image_size"] == [H, W]


def test_upload_over_the_size_limit_is_refused_with_the_limit(client, app_server, files):
    with pytest.raises(ValueError, match="maximum file size of 1000000 bytes"):
        client.predict(image=handle_file(files["over-limit.png"]), prompt="ball",
                       api_name="/detect_segment")  # fmt: skip
    # the server refuses it too, for clients that do not check first
    with open(files["over-limit.png"], "rb") as fp:
        r = httpx.post(app_server.url + "gradio_api/upload", files={"files": fp}, timeout=60)
    assert r.status_code == 413 or "maximum" in r.text.lower()


def test_no_image(client):
    message = refused(client.predict, image=None, prompt="ball", api_name="/detect_segment")
    assert "Upload an image" in message


# ---------------------------------------------------------------------- options


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"prompt": ""}, "names no class"),
        ({"prompt": " . . "}, "names no class"),
        ({"prompt": "a . b . c . d . e . f"}, "number of classes is 6, more than this server's"),
        ({"prompt": "cat " * 60}, "prompt's length is 240"),
        ({"prompt": "ball", "box_threshold": 5}, "box_threshold must be in [0, 1], got 5"),
        ({"prompt": "ball", "text_threshold": -0.5}, "text_threshold must be in [0, 1]"),
        ({"prompt": "ball", "detector": "clip", "clip_threshold": 1.5}, "score_threshold"),
        ({"prompt": "ball", "detector": "<ndarray>"}, "unknown detector '<ndarray>'"),
        ({"prompt": "ball", "sam": "vit_q"}, "unknown SAM model"),
    ],
)
def test_detect_segment_options(client, files, kwargs, expected):
    message = refused(
        client.predict, image=handle_file(files["good.jpg"]), api_name="/detect_segment", **kwargs
    )
    assert expected in message  # <ndarray> arrives as text: the API's message is not HTML


@pytest.mark.parametrize(
    "options, expected",
    [
        ({"points_per_side": 9}, "points_per_side is 9, more than this server's limit of 8"),
        ({"points_per_side": 0}, "points_per_side must be in [1, inf]"),
        ({"points_per_side": 2.5}, "whole number"),
        ({"crop_n_layers": 2}, "crop_n_layers is 2, more than this server's limit of 1"),
        ({"crop_n_layers": -1}, "crop_n_layers must be in [0, inf]"),
        ({"pred_iou_thresh": "high"}, "pred_iou_thresh must be a number"),
        ({"bogus": 1}, "unknown option"),
        ([4, 4], "options must be a JSON object"),
    ],
)
def test_everything_options(client, files, options, expected):
    message = refused(
        client.predict, image=handle_file(files["good.jpg"]), options=options,
        api_name="/everything",
    )  # fmt: skip
    assert expected in message


def test_everything_work_is_bounded_by_grid_and_image_size(client, tmp_path):
    path = tmp_path / "megapixel.png"
    path.write_bytes(huge_png(1000, 1000))  # within the pixel limit
    message = refused(
        client.predict, image=handle_file(str(path)), options={"points_per_side": 8},
        api_name="/everything",
    )  # fmt: skip
    assert "1000x1000 image with points_per_side=8" in message
    assert "is 64, more than this server's limit of 32; use points_per_side <= 5" in message


def test_everything_at_the_limit_answers(client, files):
    result = client.predict(
        image=handle_file(files["good.jpg"]),
        options={"points_per_side": 8, "pred_iou_thresh": 0, "stability_score_thresh": 0},
        api_name="/everything",
    )
    assert len(result["detections"]) >= 1


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"points": "abc", "labels": [1]}, "points must be a list"),
        ({"points": [[1, 2, 3]], "labels": [1]}, "expected 2 numbers"),
        ({"points": [[1, "x"]], "labels": [1]}, "points[0][1] must be a number"),
        ({"points": [[1, 2]], "labels": [1, 0]}, "one label per point"),
        ({"points": [[1, 2]], "labels": [2]}, "use 1 (foreground) or 0 (background)"),
        ({"points": [[500, 2]], "labels": [1]}, "outside the 80x60 image"),
        ({"points": [[1, 1]] * 5, "labels": [1] * 5}, "number of points is 5"),
        ({"box": [50, 10, 20, 40]}, "x1 < x2 and y1 < y2"),
        ({"box": [1, 2, 3]}, "expected 4 numbers"),
        ({"points": [], "labels": []}, "at least one point"),
    ],
)
def test_segment_points_inputs(client, files, kwargs, expected):
    message = refused(
        client.predict, image=handle_file(files["good.jpg"]), api_name="/segment_points", **kwargs
    )
    assert expected in message


# ---------------------------------------------------------------------- raw HTTP


def call_raw(url: str, api: str, body: str) -> str:
    """POST ``body`` (JSON text, NaN allowed) to Gradio's HTTP API; the event stream's text."""
    r = httpx.post(url + f"gradio_api/call/{api}", content=body, timeout=30,
                   headers={"content-type": "application/json"})  # fmt: skip
    r.raise_for_status()
    return httpx.get(url + f"gradio_api/call/{api}/{r.json()['event_id']}", timeout=60).text


@pytest.fixture(scope="module")
def uploaded(app_server, files) -> str:
    """The good JPEG uploaded once, as the JSON FileData the HTTP API takes."""
    with open(files["good.jpg"], "rb") as fp:
        (path,) = httpx.post(app_server.url + "gradio_api/upload", files={"files": fp}).json()
    return json.dumps({"path": path, "meta": {"_type": "gradio.FileData"}})


@pytest.mark.parametrize(
    "api, data, expected",
    [
        ("detect_segment", '["ball", "grounding_dino", "", NaN, 0.2, 0.3]', "finite number"),
        ("detect_segment", '["ball", "clip", "", 0.3, 0.2, Infinity]', "finite number"),
        ("segment_points", '[[[NaN, 3]], [1], [], ""]', "points[0][0] must be a finite"),
        ("segment_points", '[[], [], [1, 2, Infinity, 9], ""]', "box[0][2] must be a finite"),
        ("everything", '[{"pred_iou_thresh": NaN}, ""]', "pred_iou_thresh must be a finite"),
    ],
)
def test_values_gradio_client_cannot_send(app_server, uploaded, api, data, expected):
    text = call_raw(app_server.url, api, f'{{"data": [{uploaded}, {data[1:]}}}')
    assert "event: error" in text and expected in text and GENERIC not in text


def test_a_path_that_was_not_uploaded_is_not_read(app_server):
    passwd = {"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}
    body = json.dumps({"data": [passwd, "ball", "grounding_dino", "", 0.3, 0.2, 0.3]})
    text = call_raw(app_server.url, "detect_segment", body)
    assert "event: error" in text and "not uploaded by a user" in text


# ---------------------------------------------------------------------- the server's log


def test_refusals_are_one_line_each_in_the_log(app_server):
    log = app_server.log()
    refusals = [line for line in log.splitlines() if " refused /" in line]
    assert len(refusals) >= 30
    # the only traceback is Gradio's own, for the path that was not uploaded
    assert log.count("Traceback") <= log.count("InvalidPathError: Cannot move /etc/passwd")
    assert "bug in" not in log
