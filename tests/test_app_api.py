"""The demo's API: ``python app.py --tiny-random`` on a localhost port, every named endpoint
called with gradio_client; JSON structure checked, masks decoded to the image size."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from grounded_sam.masks import rle_to_mask

pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

H, W = 72, 100  # not square: a swapped (H, W) would show


@pytest.fixture(scope="module")
def client(app_server) -> Client:
    return Client(app_server.url, verbose=False)


@pytest.fixture(scope="module")
def image_path(tmp_path_factory) -> str:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
    img[10:50, 20:70] = (220, 40, 40)
    path = tmp_path_factory.mktemp("img") / "scene.png"
    Image.fromarray(img).save(path)
    return str(path)


def check_result(result: dict, classes: list[str]) -> list[dict]:
    """The structure every endpoint answers with; returns the detections."""
    assert set(result) >= {"image_size", "detections", "classes", "random_weights"}
    assert result["image_size"] == [H, W]
    assert result["classes"] == classes
    assert result["random_weights"] is True
    for det in result["detections"]:
        x1, y1, x2, y2 = det["xyxy"]
        assert 0 <= x1 <= x2 <= W and 0 <= y1 <= y2 <= H
        assert isinstance(det["score"], float)
        assert isinstance(det["phrase"], str)
        assert isinstance(det["class_id"], int) and -1 <= det["class_id"] < max(1, len(classes))
        assert isinstance(det["mask_score"], float)
        mask = rle_to_mask(det["mask"])
        assert mask.shape == (H, W) and mask.dtype == bool
        assert det["mask"]["size"] == [H, W]
    return result["detections"]


def test_endpoints_are_named(client):
    names = set(client.view_api(return_format="dict", print_info=False)["named_endpoints"])
    assert {"/detect_segment", "/segment_points", "/everything", "/models"} <= names


def test_models_reports_random_weights(client):
    info = client.predict(api_name="/models")
    assert info["random_weights"] is True
    assert info["fast"] is False  # the exact models unless `--fast`
    assert info["detectors"] == ["grounding_dino", "clip"]
    assert all(m["present"] for m in info["models"])


def test_detect_segment_grounding_dino(client, image_path):
    result = client.predict(
        image=handle_file(image_path),
        prompt="ball . box",
        detector="grounding_dino",
        box_threshold=0.0,
        text_threshold=0.0,
        api_name="/detect_segment",
    )
    dets = check_result(result, ["ball", "box"])
    assert len(dets) > 0  # threshold 0 keeps every query of the tiny model
    for det in dets:
        assert isinstance(det["data"]["needs_review"], bool)
        assert det["data"]["class_name"] in ("", "ball", "box")


def test_detect_segment_clip(client, image_path):
    result = client.predict(
        image=handle_file(image_path),
        prompt="ball",
        detector="clip",
        clip_threshold=0.0,
        api_name="/detect_segment",
    )
    assert len(check_result(result, ["ball"])) > 0


def test_segment_points_with_points_and_box(client, image_path):
    result = client.predict(
        image=handle_file(image_path),
        points=[[40, 30], [5, 5]],
        labels=[1, 0],
        box=[20, 10, 70, 50],
        api_name="/segment_points",
    )
    (det,) = check_result(result, ["object"])
    assert det["class_id"] == 0
    box_only = client.predict(
        image=handle_file(image_path), box=[20, 10, 70, 50], api_name="/segment_points"
    )
    assert len(check_result(box_only, ["object"])) == 1


def test_everything(client, image_path):
    result = client.predict(
        image=handle_file(image_path), options={"points_per_side": 4}, api_name="/everything"
    )
    dets = check_result(result, [])
    assert len(dets) >= 1
    assert all(d["class_id"] == -1 for d in dets)


@pytest.mark.parametrize(
    "endpoint, kwargs, message",
    [
        ("/detect_segment", {"prompt": " . "}, "names no class"),
        ("/detect_segment", {"prompt": "cat", "detector": "yolo"}, "unknown detector"),
        ("/detect_segment", {"prompt": "cat", "sam": "vit_q"}, "unknown SAM model"),
        ("/segment_points", {"points": [[1, 2]], "labels": [1, 0]}, "one label per point"),
        ("/everything", {"options": {"bogus": 1}}, "unknown option"),
    ],
)
def test_bad_requests_get_clear_errors(client, image_path, endpoint, kwargs, message):
    with pytest.raises(AppError, match=message):
        client.predict(image=handle_file(image_path), api_name=endpoint, **kwargs)


@pytest.fixture(scope="module")
def app_module():
    """``app.py`` imported as a module (it builds nothing: models load on first use)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "grounded_sam_app", Path(__file__).resolve().parents[1] / "app.py"
    )
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    return app


def test_page_messages_are_escaped_and_api_messages_plain(app_module, caplog):
    import gradio as gr

    from grounded_sam.errors import ImageError

    def bad(shape):
        raise ImageError("<ndarray>", f"shape {shape}")

    with pytest.raises(gr.Error) as page:
        app_module.guarded(bad, endpoint="page text", page=True)((2, 3))
    assert page.value.message == "cannot load image &lt;ndarray&gt;: shape (2, 3)"
    assert page.value.print_exception is False
    with pytest.raises(gr.Error) as api:
        app_module.guarded(bad, endpoint="/detect_segment", page=False)((2, 3))
    assert api.value.message == "cannot load image <ndarray>: shape (2, 3)"
    assert "refused /detect_segment: cannot load image <ndarray>" in caplog.text
    assert "Traceback" not in caplog.text


def test_a_bug_is_logged_with_its_traceback_and_answered_without_internals(app_module, caplog):
    import gradio as gr

    def buggy():
        return np.zeros(2) + np.zeros(3)  # a ValueError raised inside numpy: a bug of ours

    with pytest.raises(gr.Error) as info:
        app_module.guarded(buggy, endpoint="/everything", page=False)()
    assert info.value.message == "internal error (ValueError); the server log has the details"
    assert "bug in /everything" in caplog.text and "Traceback" in caplog.text


def test_fast_flag_reaches_the_model_manager(app_module, capsys):
    app = app_module
    assert app.build_manager(app.parse_args(["--tiny-random"])).fast is False
    manager = app.build_manager(app.parse_args(["--tiny-random", "--fast", "--sam", "vit_l"]))
    assert manager.fast is True and manager.tiny_random is True
    with pytest.raises(SystemExit):
        app.parse_args(["--help"])
    out = capsys.readouterr().out
    assert "--fast" in out and "GROUNDED_SAM_NO_MALLOC_TUNING=1" in out


def test_start_fetches_only_the_chosen_registry_models(app_module, tmp_path):
    """--grounding-dino naming a folder or a .pth fetches only SAM; a registry name fetches it."""
    app = app_module
    assert app.startup_downloads("vit_b", "grounding_dino_tiny") == [
        "sam_vit_b",
        "grounding_dino_tiny",
    ]
    assert app.startup_downloads("sam2.1_hiera_tiny", "groundingdino_swint_ogc") == [
        "sam2.1_hiera_tiny",
        "groundingdino_swint_ogc",
    ]
    own = tmp_path / "groundingdino_swint_ogc.pth"
    assert app.startup_downloads("vit_h", str(own)) == ["sam_vit_h"]
    assert app.startup_downloads("vit_b", str(tmp_path / "gdino-folder")) == ["sam_vit_b"]
