"""The web API decodes uploads as the library does: an RGBA PNG, a 16-bit PNG, an LA PNG and a
palette GIF give the same detections as the RGB PNG that ``gs.load_image`` makes of each.

Each generated image is one that Gradio's own decoding would change (transparency composited
over black, 16 bits saturated, a GIF as palette indices), checked here too, so the equality
is not a coincidence of easy inputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _images import blob_image
from PIL import Image

import grounded_sam as gs

pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402

H, W = 64, 96


@pytest.fixture(scope="module")
def client(app_server) -> Client:
    return Client(app_server.url, verbose=False)


def _alpha() -> np.ndarray:
    """A horizontal ramp 0..255 with an opaque block: every kind of compositing shows."""
    alpha = np.tile(np.linspace(0, 255, W).astype(np.uint8), (H, 1))
    alpha[10:30, 10:40] = 255
    return alpha


def make_inputs(folder: Path) -> dict[str, Path]:
    rgb = blob_image(H, W, seed=3)
    gray = rgb.mean(axis=2).astype(np.uint8)
    out = {
        "rgba.png": Image.fromarray(np.dstack([rgb, _alpha()])),
        "la.png": Image.fromarray(np.dstack([gray, _alpha()])),
        "gray16.png": Image.fromarray(gray.astype(np.uint16) * 257),
        "palette.gif": Image.fromarray(rgb).quantize(32, dither=Image.Dither.NONE),
    }
    paths = {}
    assert [im.mode for im in out.values()] == ["RGBA", "LA", "I;16", "P"]
    for name, im in out.items():
        paths[name] = folder / name
        im.save(paths[name])
    return paths


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """name -> (the file, the RGB PNG ``gs.load_image`` makes of it)."""
    folder = tmp_path_factory.mktemp("modes")
    pairs = {}
    for name, path in make_inputs(folder).items():
        rgb_path = folder / f"{path.stem}.rgb.png"
        Image.fromarray(gs.load_image(path)).save(rgb_path)
        pairs[name] = (path, rgb_path)
    return pairs


def naive_gradio_decoding(path: Path) -> np.ndarray:
    """What ``gr.Image(type="numpy")`` used to hand the app (PIL's own conversion)."""
    return np.asarray(Image.open(path))


@pytest.mark.parametrize("name", ["rgba.png", "la.png", "gray16.png", "palette.gif"])
def test_web_api_sees_the_library_pixels(client, inputs, name):
    path, rgb_path = inputs[name]
    library = gs.load_image(path)
    naive = naive_gradio_decoding(path)
    assert naive.shape != library.shape or not np.array_equal(naive, library)

    def detect(p: Path) -> dict:
        return client.predict(
            image=handle_file(str(p)),
            prompt="ball . box",
            box_threshold=0.0,
            text_threshold=0.0,
            api_name="/detect_segment",
        )

    got, want = detect(path), detect(rgb_path)
    assert got["image_size"] == want["image_size"] == [H, W]
    assert len(want["detections"]) > 0
    assert got["detections"] == want["detections"]  # boxes, scores, phrases, RLE masks


def test_click_segmentation_sees_the_library_pixels(client, inputs):
    path, rgb_path = inputs["rgba.png"]

    def click(p: Path) -> dict:
        return client.predict(
            image=handle_file(str(p)), points=[[20, 20]], labels=[1], api_name="/segment_points"
        )

    assert click(path)["detections"] == click(rgb_path)["detections"]
