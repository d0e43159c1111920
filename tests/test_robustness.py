"""A corpus of bad inputs across the library's entry points, generated here (no binary files).

Each case ends in a correct result or a project error whose message says what was wrong; no
exception may escape from code outside grounded_sam (the innermost frame that raised must be
a grounded_sam file, or the exception a grounded_sam error type). The CLI's cases are in
``test_cli_bad_inputs`` below: an exit code from the README and a message, no traceback.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import traceback
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import grounded_sam as gs
from grounded_sam.errors import GroundedSamError

PACKAGE_DIR = Path(gs.__file__).resolve().parent
RGB = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)


def png_bytes(array: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, mode).save(buf, format="PNG")
    return buf.getvalue()


def zeros(h: int, w: int) -> np.ndarray:
    return np.zeros((h, w, 3), np.uint8)


class Evil:
    """A pickle that would create a folder when unpickled by a loader that runs code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (str(self.marker),))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    import torch

    from grounded_sam.testing.grounding_dino import tiny_grounding_dino
    from grounded_sam.testing.sam import tiny_sam

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model, processor = tiny_grounding_dino(tmp_path_factory.mktemp("gd"), words=["cat", "dog"])
    det = gs.GroundingDinoDetector(model, processor, box_threshold=0.0)
    seg = gs.SamSegmenter(tiny_sam(seed=0, global_attn_indexes=()))
    yield {"det": det, "seg": seg, "pipe": gs.Pipeline(det, seg), "tmp": tmp_path_factory}
    torch.set_num_threads(threads)


def dets(xyxy, size=(40, 50)) -> gs.Detections:
    n = len(xyxy)
    return gs.Detections(
        xyxy=np.asarray(xyxy, np.float32).reshape(n, 4),
        scores=np.ones(n, np.float32),
        phrases=["cat"] * n,
        class_id=np.zeros(n, np.int64),
        image_size=size,
    )


def file_with(m, name: str, data: bytes) -> Path:
    path = m["tmp"].mktemp("f") / name
    path.write_bytes(data)
    return path


# (id, call, expected): expected None = a result; else a regex the error message must match.
L = gs.load_image
CASES = [
    # ---------------------------------------------------------------- load_image
    ("load None", lambda m: L(None), "unsupported input type"),
    ("load int", lambda m: L(5), "unsupported input type"),
    ("load list", lambda m: L([[1, 2]]), "unsupported input type"),
    ("load missing path", lambda m: L("/no/such/file.png"), "file not found"),
    ("load directory", lambda m: L(str(m["tmp"].getbasetemp())), "directory"),
    ("load empty bytes", lambda m: L(b""), "empty"),
    ("load random bytes", lambda m: L(bytes(range(256)) * 4), "not an image"),
    ("load text bytes", lambda m: L(b"hello, not an image"), "not an image"),
    ("load truncated png", lambda m: L(png_bytes(RGB)[:200]), "truncated|damaged|corrupt"),
    ("load zero-byte file", lambda m: L(file_with(m, "z.png", b"")), "empty"),
    ("load text named .jpg", lambda m: L(file_with(m, "t.jpg", b"text\n" * 9)), "not an image"),
    ("load EPS", lambda m: L(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 1 1\n"), "EPS|not an"),
    ("load text file object", lambda m: L(io.StringIO("x")), "text mode"),
    ("load closed file", lambda m: L(_closed()), "cannot read"),
    ("load float NaN", lambda m: L(np.full((4, 4, 3), np.nan, np.float32)), "NaN"),
    ("load float inf", lambda m: L(np.full((4, 4), np.inf)), "inf"),
    ("load float 0..255", lambda m: L(np.full((4, 4, 3), 200.0)), r"\[0, 1\]"),
    ("load 4-D array", lambda m: L(np.zeros((2, 4, 4, 3), np.uint8)), "shape"),
    ("load 2 channels", lambda m: L(np.zeros((4, 4, 2), np.uint8)), "channels"),
    ("load channels first", lambda m: L(np.zeros((3, 8, 8), np.uint8)), "channels-first"),
    ("load zero-size array", lambda m: L(np.zeros((0, 4, 3), np.uint8)), "zero-size"),
    ("load object array", lambda m: L(np.array([[None]])), "dtype"),
    ("load string array", lambda m: L(np.array([["a"]])), "dtype"),
    ("load complex array", lambda m: L(np.zeros((2, 2), complex)), "dtype"),
    ("load over max_pixels", lambda m: L(RGB, max_pixels=10), "limit"),
    ("load max_pixels 0", lambda m: L(RGB, max_pixels=0), "positive"),
    ("load max_pixels str", lambda m: L(RGB, max_pixels="9"), "positive"),
    ("load 1x1 png", lambda m: L(png_bytes(zeros(1, 1))), None),
    ("load bool array", lambda m: L(np.ones((3, 3), bool)), None),
    ("load negative int16", lambda m: L(np.full((3, 3), -5, np.int16)), None),
    ("load uint16 array", lambda m: L(np.full((3, 3, 3), 65535, np.uint16)), None),
    ("load 16-bit png", lambda m: L(png_bytes(np.full((3, 3), 4000, np.uint16))), None),
    ("load RGBA array", lambda m: L(np.zeros((3, 3, 4), np.uint8)), None),
    # ---------------------------------------------------------------- detect
    ("detect 1x1", lambda m: m["det"].detect(zeros(1, 1), "cat"), None),
    ("detect 2x2", lambda m: m["det"].detect(zeros(2, 2), "cat"), None),
    ("detect 3 px tall", lambda m: m["det"].detect(zeros(3, 50), "cat"), None),
    ("detect 3 px wide", lambda m: m["det"].detect(zeros(50, 3), "cat"), None),
    ("detect 1x5000 strip", lambda m: m["det"].detect(zeros(1, 5000), "cat"), None),
    ("detect 5760x1 strip", lambda m: m["det"].detect(zeros(5760, 1), "cat"), None),
    ("detect empty prompt", lambda m: m["det"].detect(RGB, ""), "empty prompt"),
    ("detect dots prompt", lambda m: m["det"].detect(RGB, " . . "), "empty prompt"),
    ("detect None prompt", lambda m: m["det"].detect(RGB, None), "prompt must be"),
    ("detect int prompt", lambda m: m["det"].detect(RGB, 7), "prompt must be"),
    ("detect empty list", lambda m: m["det"].detect(RGB, []), "empty prompt"),
    ("detect list of ints", lambda m: m["det"].detect(RGB, [1, 2]), "class|prompt"),
    ("detect None image", lambda m: m["det"].detect(None, "cat"), "unsupported input"),
    ("detect NaN image", lambda m: m["det"].detect(np.full((4, 4), np.nan), "cat"), "NaN"),
    ("detector NaN threshold", lambda m: _gd(m, box_threshold=float("nan")), "finite"),
    ("detector str threshold", lambda m: _gd(m, text_threshold="0.3"), "number"),
    ("detector threshold 5", lambda m: _gd(m, box_threshold=5), r"\[0, 1\]"),
    ("detector top_k -1", lambda m: _gd(m, top_k=-1), ">= 1"),
    ("detector top_k 2.5", lambda m: _gd(m, top_k=2.5), "whole number"),
    ("detector nms bogus", lambda m: _gd(m, nms="greedy"), "nms must be"),
    ("detector nms_iou 2", lambda m: _gd(m, nms_iou=2), r"\[0, 1\]"),
    # ---------------------------------------------------------------- segment
    ("segment no boxes", lambda m: m["seg"].segment(RGB, dets([])), None),
    ("segment box outside", lambda m: m["seg"].segment(RGB, dets([[900, 900, 990, 990]])), None),
    ("segment empty box", lambda m: m["seg"].segment(RGB, dets([[5, 5, 5, 5]])), None),
    (
        "segment size mismatch",
        lambda m: m["seg"].segment(RGB, dets([[0, 0, 4, 4]], (9, 9))),
        "H, W",
    ),
    ("segment list not dets", lambda m: m["seg"].segment(RGB, [[0, 0, 4, 4]]), "Detections"),
    ("segment None dets", lambda m: m["seg"].segment(RGB, None), "Detections"),
    ("segment reversed box", lambda m: dets([[10, 10, 0, 0]]), "x1 <= x2"),
    ("segment NaN box", lambda m: dets([[np.nan, 0, 4, 4]]), "finite"),
    (
        "segment 1x5000",
        lambda m: m["seg"].segment(zeros(1, 5000), dets([[0, 0, 9, 1]], (1, 5000))),
        "elongated",
    ),
    ("segment 1x1", lambda m: m["seg"].segment(zeros(1, 1), dets([[0, 0, 1, 1]], (1, 1))), None),
    (
        "segment multimask",
        lambda m: m["seg"].segment(RGB, dets([[0, 0, 9, 9]]), multimask=True),
        None,
    ),
    ("segmenter max_batch 0", lambda m: gs.SamSegmenter(m["seg"].sam, max_batch=0), ">= 1"),
    (
        "segmenter cache_size str",
        lambda m: gs.SamSegmenter(m["seg"].sam, cache_size="4"),
        "integer",
    ),
    ("segmenter cache_size -1", lambda m: gs.SamSegmenter(m["seg"].sam, cache_size=-1), ">= 0"),
    (
        "segmenter bad dtype",
        lambda m: gs.SamSegmenter(m["seg"].sam, dtype="float7"),
        "dtype|float7",
    ),
    # ---------------------------------------------------------------- segment_points
    ("points NaN", lambda m: m["seg"].segment_points(RGB, [[np.nan, 1]], [1]), "finite"),
    ("points inf", lambda m: m["seg"].segment_points(RGB, [[np.inf, 1]], [1]), "finite"),
    ("points strings", lambda m: m["seg"].segment_points(RGB, [["a", "b"]], [1]), "numbers"),
    ("points ragged", lambda m: m["seg"].segment_points(RGB, [[1, 2], [3]], [1, 1]), "numbers"),
    ("points 3 columns", lambda m: m["seg"].segment_points(RGB, [[1, 2, 3]], [1]), r"\(K, 2\)"),
    ("points label count", lambda m: m["seg"].segment_points(RGB, [[1, 2]], [1, 0]), r"\(K,\)"),
    ("points label 5", lambda m: m["seg"].segment_points(RGB, [[1, 2]], [5]), "foreground"),
    ("points label NaN", lambda m: m["seg"].segment_points(RGB, [[1, 2]], [np.nan]), "finite"),
    ("points label str", lambda m: m["seg"].segment_points(RGB, [[1, 2]], ["fg"]), "numbers"),
    ("points nothing", lambda m: m["seg"].segment_points(RGB, [], []), "at least one"),
    ("points None, no box", lambda m: m["seg"].segment_points(RGB, None, None), "at least one"),
    (
        "points None with box",
        lambda m: m["seg"].segment_points(RGB, None, None, box=[1, 1, 9, 9]),
        None,
    ),
    ("points outside image", lambda m: m["seg"].segment_points(RGB, [[-50, 500]], [1]), None),
    ("points huge coords", lambda m: m["seg"].segment_points(RGB, [[1e30, 1e30]], [1]), None),
    (
        "points box NaN",
        lambda m: m["seg"].segment_points(RGB, [[1, 1]], [1], box=[np.nan, 0, 4, 4]),
        "finite",
    ),
    (
        "points box reversed",
        lambda m: m["seg"].segment_points(RGB, [[1, 1]], [1], box=[9, 9, 1, 1]),
        "x1 <= x2",
    ),
    (
        "points box 3 values",
        lambda m: m["seg"].segment_points(RGB, [[1, 1]], [1], box=[1, 1, 9]),
        r"\(4,\)",
    ),
    (
        "points mask NaN",
        lambda m: m["seg"].segment_points(
            RGB, [[1, 1]], [1], mask_input=np.full((1, 256, 256), np.nan)
        ),
        "finite",
    ),
    (
        "points mask shape",
        lambda m: m["seg"].segment_points(RGB, [[1, 1]], [1], mask_input=np.zeros((9, 9))),
        "low-res",
    ),
    (
        "points 1x4000",
        lambda m: m["seg"].segment_points(zeros(1, 4000), [[1, 0]], [1]),
        "elongated",
    ),
    ("points 1x1 image", lambda m: m["seg"].segment_points(zeros(1, 1), [[0, 0]], [1]), None),
    # ---------------------------------------------------------------- generate
    ("generate points_per_side 0", lambda m: _gen(m, points_per_side=0), ">= 1"),
    ("generate points_per_side -3", lambda m: _gen(m, points_per_side=-3), ">= 1"),
    ("generate points_per_side 2.5", lambda m: _gen(m, points_per_side=2.5), "whole number"),
    ("generate points_per_side str", lambda m: _gen(m, points_per_side="8"), "integer"),
    ("generate no grid", lambda m: _gen(m, points_per_side=None), "exactly one"),
    ("generate crop_n_layers -1", lambda m: _gen(m, crop_n_layers=-1), ">= 0"),
    ("generate points_per_batch 0", lambda m: _gen(m, points_per_batch=0), ">= 1"),
    ("generate unknown option", lambda m: _gen(m, points_per_sides=4), "unknown"),
    ("generate box_nms 2", lambda m: _gen(m, box_nms_thresh=2), r"\[0, 1\]"),
    ("generate overlap 1", lambda m: _gen(m, crop_overlap_ratio=1.0), r"\[0, 1\)"),
    ("generate pred_iou NaN", lambda m: _gen(m, pred_iou_thresh=float("nan")), "finite"),
    ("generate offset -1", lambda m: _gen(m, stability_score_offset=-1), "finite number in"),
    ("generate downscale 0", lambda m: _gen(m, crop_n_points_downscale_factor=0), ">= 1"),
    ("generate min area -1", lambda m: _gen(m, min_mask_region_area=-1), ">= 0"),
    (
        "generate grid NaN",
        lambda m: _gen(m, points_per_side=None, point_grids=[[[np.nan, 0.5]]]),
        "finite",
    ),
    (
        "generate grid outside",
        lambda m: _gen(m, points_per_side=None, point_grids=[[[2.0, 0.5]]]),
        r"\[0, 1\]",
    ),
    (
        "generate grid shape",
        lambda m: _gen(m, points_per_side=None, point_grids=[[0.5, 0.5, 0.5]]),
        r"\(P, 2\)",
    ),
    (
        "generate 1x4000",
        lambda m: m["seg"].generate(zeros(1, 4000), points_per_side=2),
        "elongated",
    ),
    ("generate 1x1", lambda m: m["seg"].generate(zeros(1, 1), points_per_side=2), None),
    ("generate one layer of crops", lambda m: _gen(m, crop_n_layers=1), None),
    # ---------------------------------------------------------------- Pipeline
    ("pipeline 1x1", lambda m: m["pipe"](zeros(1, 1), "cat"), None),
    ("pipeline 3 px tall", lambda m: m["pipe"](zeros(3, 60), "cat"), None),
    ("pipeline 1x5000", lambda m: _pipe_or_refuse(m, zeros(1, 5000)), None),
    ("pipeline empty prompt", lambda m: m["pipe"](RGB, ""), "no class|empty prompt"),
    ("pipeline None image", lambda m: m["pipe"](None, "cat"), "unsupported input"),
    ("pipeline bytes image", lambda m: m["pipe"](b"garbage", "cat"), "not an image"),
    ("pipeline segment list", lambda m: m["pipe"].segment(RGB, []), "Detections"),
    (
        "pipeline label no classes",
        lambda m: gs.Pipeline(m["det"], m["seg"]).label(dets([])),
        "class",
    ),
    ("pipeline top_k 0", lambda m: gs.Pipeline(m["det"], m["seg"], top_k=0), ">= 1"),
    (
        "pipeline min area str",
        lambda m: gs.Pipeline(m["det"], m["seg"], min_mask_area="9"),
        "integer",
    ),
    # ---------------------------------------------------------------- ClipMaskDetector
    ("clip amg points_per_side 0", lambda m: _clip(m, amg_options={"points_per_side": 0}), ">= 1"),
    ("clip amg unknown option", lambda m: _clip(m, amg_options={"grid": 4}), "unknown"),
    ("clip score NaN", lambda m: _clip(m, score_threshold=float("nan")), "finite"),
    ("clip batch_size 0", lambda m: _clip(m, batch_size=0), ">= 1"),
    ("clip nms_threshold 3", lambda m: _clip(m, nms_threshold=3), r"\[0, 1\]"),
    ("clip empty prompt", lambda m: _clip(m).detect(RGB[:16, :16], ""), "empty prompt"),
    ("clip 1x4000", lambda m: _clip(m).detect(zeros(1, 4000), "cat"), "elongated"),
    # ---------------------------------------------------------------- auto_label
    ("auto_label bad format", lambda m: _auto(m, formats="gif"), "format"),
    ("auto_label bad shard", lambda m: _auto(m, shard="3/2"), "shard"),
    ("auto_label shard text", lambda m: _auto(m, shard="half"), "shard"),
    ("auto_label no classes", lambda m: _auto(m, classes=[]), "class"),
    ("auto_label shard + overwrite", lambda m: _auto(m, shard=(0, 2), overwrite=True), "overwrite"),
    # ---------------------------------------------------------------- checkpoints
    ("sam checkpoint text", lambda m: _sam_ckpt(m, b"not a checkpoint"), "cannot read checkpoint"),
    ("sam checkpoint pickle", lambda m: _sam_ckpt(m, _evil_bytes(m)), "cannot read checkpoint"),
    (
        "sam checkpoint missing",
        lambda m: gs.SamSegmenter.from_checkpoint("vit_b", "/no/x.pth"),
        "not found",
    ),
    ("clip weights pickle", lambda m: _clip_ckpt(m), "cannot load CLIP weights"),
    ("dino weights pickle", lambda m: _dino_ckpt(m), "cannot load the Grounding DINO weights"),
]


def _closed():
    f = io.BytesIO(b"x")
    f.close()
    return f


def _clip(m, **kwargs):
    from grounded_sam.testing.clip import tiny_clip

    kwargs.setdefault("amg_options", {"points_per_side": 2})
    return gs.ClipMaskDetector(m["seg"], *tiny_clip(seed=0), **kwargs)


def _auto(m, classes=("cat",), **kwargs):
    folder = m["tmp"].mktemp("photos")
    (folder / "a.png").write_bytes(png_bytes(zeros(8, 8)))
    out = m["tmp"].mktemp("labels")
    return gs.auto_label(m["pipe"], folder, list(classes), out, progress=False, **kwargs)


def _gd(m, **kwargs):
    return gs.GroundingDinoDetector(m["det"].model, m["det"].processor, **kwargs)


def _gen(m, **options):
    return m["seg"].generate(RGB[:16, :16], **{"points_per_side": 2, **options})


def _pipe_or_refuse(m, image):
    """A strip: Grounding DINO takes it; SAM then refuses it unless nothing was detected."""
    try:
        return m["pipe"](image, "cat")
    except gs.ImageError as err:
        assert "elongated" in str(err)
        return None


def _evil_bytes(m) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save({"w": Evil(m["tmp"].getbasetemp() / "PWNED")}, buf)
    return buf.getvalue()


def _sam_ckpt(m, data: bytes):
    return gs.SamSegmenter.from_checkpoint("vit_b", file_with(m, "sam.pth", data))


def _clip_ckpt(m):
    from grounded_sam.models.clip_loading import load_clip
    from grounded_sam.testing.clip import register_tiny_clip_config

    name = register_tiny_clip_config()
    return load_clip(name, file_with(m, "clip.bin", _evil_bytes(m)))


def _dino_ckpt(m):
    from grounded_sam.testing.grounding_dino import save_tiny_grounding_dino

    folder = save_tiny_grounding_dino(m["tmp"].mktemp("dino"), words=["cat"])
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(_evil_bytes(m))
    return gs.GroundingDinoDetector.from_pretrained(folder)


def raising_file(exc: BaseException) -> str:
    """The file of the innermost frame of ``exc``'s traceback (where it was raised)."""
    frames = traceback.extract_tb(exc.__traceback__)
    return frames[-1].filename if frames else "<no traceback>"


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 80
    assert len({name for name, _, _ in CASES}) == len(CASES)


@pytest.mark.parametrize(("name", "call", "expected"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_ends_in_a_result_or_a_project_error(models, name, call, expected):
    try:
        result = call(models)
    except Exception as exc:
        where = raising_file(exc)
        ours = isinstance(exc, GroundedSamError) or Path(where).resolve().is_relative_to(
            PACKAGE_DIR
        )
        assert ours, f"{name}: {type(exc).__name__} escaped from {where}: {exc}"
        assert isinstance(exc, ValueError | TypeError | GroundedSamError), repr(exc)
        assert expected is not None, f"{name}: expected a result, got {type(exc).__name__}: {exc}"
        assert re.search(expected, str(exc)), f"{name}: message {str(exc)!r} lacks {expected!r}"
        assert not (models["tmp"].getbasetemp() / "PWNED").exists(), "a pickle ran code"
        return
    assert expected is None, f"{name}: expected an error matching {expected!r}, got {result!r}"
    if isinstance(result, gs.Detections):
        assert np.isfinite(result.xyxy).all() and np.isfinite(result.scores).all()
        if result.masks is not None:
            assert result.masks.shape[1:] == result.image_size
    if isinstance(result, tuple) and len(result) == 3:  # segment_points
        mask, score, _ = result
        assert mask.dtype == bool and np.isfinite(score)


# ---------------------------------------------------------------------------------- CLI


def _cli_cases(tmp: Path) -> list[tuple[str, list[str], int, str]]:
    """(id, argv, exit code, regex on stderr + stdout)."""
    empty = tmp / "empty"
    empty.mkdir()
    bad = tmp / "bad"
    bad.mkdir()
    (bad / "zero.png").write_bytes(b"")
    (bad / "text.jpg").write_text("not an image")
    (tmp / "gt.json").write_text("{not json")
    out = str(tmp / "out")
    tiny = ["--tiny-random", "--no-progress"]
    return [
        (
            "label missing folder",
            ["label", str(tmp / "nope"), "-o", out, "--classes", "cat"],
            1,
            "no images",
        ),
        (
            "label empty folder",
            ["label", str(empty), "-o", out, "--classes", "cat"],
            1,
            "no images",
        ),
        ("label no classes", ["label", str(bad), "-o", out], 2, "classes|prompt"),
        ("label empty classes", ["label", str(bad), "-o", out, "--classes", ","], 2, "class"),
        (
            "label bad shard",
            ["label", str(bad), "-o", out, "--classes", "cat", "--shard", "5/2"],
            2,
            "shard",
        ),
        (
            "label bad formats",
            ["label", str(bad), "-o", out, "--classes", "cat", "--formats", "gif"],
            2,
            "format",
        ),
        (
            "label threads 0",
            ["label", str(bad), "-o", out, "--classes", "cat", "--threads", "0"],
            2,
            "threads|positive|N",
        ),
        (
            "label only bad images",
            ["label", str(bad), "-o", out, "--classes", "cat", *tiny],
            0,
            "skipped",
        ),
        (
            "label fail on skip",
            ["label", str(bad), "-o", out + "2", "--classes", "cat", "--fail-on-skip", *tiny],
            3,
            "skipped",
        ),
        (
            "download unknown",
            ["download", "no-such-model", "--models-dir", str(tmp)],
            1,
            "no-such-model|unknown",
        ),
        ("download nothing", ["download", "--models-dir", str(tmp)], 2, "model names"),
        (
            "eval missing files",
            ["eval", str(tmp / "a.json"), str(tmp / "b.json")],
            1,
            "a.json|not found|No such",
        ),
        (
            "eval broken json",
            ["eval", str(tmp / "gt.json"), str(tmp / "gt.json")],
            1,
            "gt.json|JSON|json",
        ),
        ("merge empty folder", ["merge", str(empty)], 1, "label|shard|result"),
    ]


@pytest.fixture(scope="module")
def cli_cases(tmp_path_factory):
    return _cli_cases(tmp_path_factory.mktemp("cli"))


@pytest.mark.parametrize("index", range(14))
def test_cli_bad_inputs(cli_cases, capsys, index):
    from grounded_sam.cli import main

    name, argv, code, pattern = cli_cases[index]
    try:
        got = main(argv)
    except SystemExit as exc:  # argparse's usage errors
        got = exc.code
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert got == code, f"{name}: exit {got}, expected {code}\n{text}"
    assert "Traceback" not in text, f"{name}: a traceback was printed\n{text}"
    assert re.search(pattern, text), f"{name}: {pattern!r} not in\n{text}"


def test_cli_case_count(tmp_path):
    assert len(_cli_cases(tmp_path)) == 14


def test_a_pickle_in_a_checkpoint_never_runs(models):
    """The pickle cases above must not have created their marker folder."""
    assert not (models["tmp"].getbasetemp() / "PWNED").exists()


def test_pickle_marker_works(tmp_path):
    """The marker is created when the pickle is loaded by plain pickle: the test is real."""
    pickle.loads(pickle.dumps(Evil(tmp_path / "made")))
    assert (tmp_path / "made").is_dir()
