"""A folder of awkward files is labelled completely: good images in every export, bad ones in
errors.jsonl, no file overwritten or written outside the output folder."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest
from PIL import Image

import grounded_sam as gs


@pytest.fixture(scope="module")
def pipe():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield gs.Pipeline.tiny_random(["cat"], detector_options={"box_threshold": 0.0}, top_k=2)
    torch.set_num_threads(threads)


def save_png(path, h, w, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path, format="PNG")


GOOD = {
    "one-pixel.png": (1, 1),
    "x/y.png": (20, 24),
    "x\\y.png": (22, 20),
    "q\\..\\..\\..\\evil.png": (16, 16),
    "a.png": (18, 18),
    "a.jpg": (18, 19),  # a PNG under another suffix: same stem as a.png
}
BAD = {"zero.png": "empty", "text.jpg": "not an image", "outside-link.png": "symbolic link"}


@pytest.fixture
def folder(tmp_path):
    src = tmp_path / "photos"
    for i, (name, (h, w)) in enumerate(GOOD.items()):
        save_png(src / name, h, w, seed=i)
    save_png(src / "strip.png", 1, 4000, seed=9)
    (src / "zero.png").write_bytes(b"")
    (src / "text.jpg").write_text("this is not an image\n")
    save_png(tmp_path / "secret.png", 8, 8, seed=10)
    (src / "outside-link.png").symlink_to(tmp_path / "secret.png")
    return src


def run(pipe, src, out, **kwargs):
    return gs.auto_label(
        pipe, src, ["cat"], out, formats=("coco", "yolo", "png"), progress=False, **kwargs
    )


def test_every_image_is_labelled_or_listed_and_nothing_is_overwritten(pipe, folder, tmp_path):
    out = tmp_path / "labels"
    old_umask = os.umask(0o022)
    try:
        summary = run(pipe, folder, out)
    finally:
        os.umask(old_umask)

    coco = json.loads((out / "annotations.coco.json").read_text())
    labelled = {im["file_name"] for im in coco["images"]}
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    skipped = {e["file_name"]: e["reason"] for e in errors}
    listed = set(GOOD) | set(BAD) | {"strip.png"}
    assert labelled | set(skipped) == listed and not labelled & set(skipped)
    assert set(GOOD) <= labelled  # 1x1, backslashes, '..' and a clashing stem all labelled
    for name, why in BAD.items():
        assert why in skipped[name], skipped[name]
    # the 1x4000 strip: labelled (nothing detected) or refused with the minimum size
    assert "strip.png" in labelled or "elongated" in skipped["strip.png"]
    assert summary.images_labelled == len(labelled)

    # one YOLO label and one PNG mask + sidecar per labelled image: none overwrote another
    labels = sorted((out / "yolo" / "labels").rglob("*.txt"))
    masks = sorted((out / "masks").rglob("*.png"))
    sidecars = [json.loads(p.read_text()) for p in (out / "masks").rglob("*.json")]
    assert len(labels) == len(masks) == len(sidecars) == len(labelled)
    assert {s["file_name"] for s in sidecars} == labelled
    for path in [*labels, *masks]:
        assert path.resolve().is_relative_to(out.resolve())
        assert "\\" not in path.name
        assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not mkstemp's 0600
    # nothing was written next to the output folder or the photos
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels", "photos", "secret.png"]

    # a finished output runs again without rewriting a single file (read-only mounts)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    again = run(pipe, folder, out)
    assert again.to_dict() == summary.to_dict()
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before


def test_follow_symlinks_opens_links_out_of_the_folder(pipe, folder, tmp_path):
    out = tmp_path / "followed"
    summary = run(pipe, folder, out, follow_symlinks=True)
    skipped = {s["file_name"] for s in summary.skipped}
    assert "outside-link.png" not in skipped
    assert {"zero.png", "text.jpg"} <= skipped


def test_a_model_failure_is_one_images_error_not_the_runs(pipe, folder, tmp_path):
    """Any exception from the pipeline (not only ImageError) is recorded and the run goes on."""

    class Flaky:
        def __init__(self, inner):
            self.inner = inner
            self.segmenter = inner.segmenter

        def config(self):
            return self.inner.config()

        def __call__(self, image, prompt, classes=None):
            if image.shape[:2] == (20, 24):
                raise RuntimeError("the model fell over")
            return self.inner(image, prompt, classes=classes)

    summary = run(Flaky(pipe), folder, tmp_path / "flaky")
    reasons = {s["file_name"]: s["reason"] for s in summary.skipped}
    assert reasons["x/y.png"] == "RuntimeError: the model fell over"
    assert "x\\y.png" not in reasons and "a.png" not in reasons


@pytest.mark.parametrize("after", [0, 6])
def test_a_full_disk_stops_the_run_and_names_the_file(pipe, folder, tmp_path, monkeypatch, after):
    """ENOSPC would fail every later image too: the run stops (while preparing, or after
    ``after`` files were written), the message names the file it could not write, no
    temporary file is left, and running again (space freed) finishes."""
    import errno

    from grounded_sam.export import _io

    out = tmp_path / "full"
    real_fsync = os.fsync
    calls = []

    def full_disk(fd):
        calls.append(fd)
        if len(calls) > after:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(_io.os, "fsync", full_disk)
    with pytest.raises(OSError) as err:
        run(pipe, folder, out)
    assert err.value.errno == errno.ENOSPC
    assert str(out) in str(err.value)  # which file
    monkeypatch.setattr(_io.os, "fsync", real_fsync)
    assert not [p for p in out.rglob("*.tmp")]
    summary = run(pipe, folder, out)
    assert not set(GOOD) & {s["file_name"] for s in summary.skipped}


def test_an_export_error_is_that_images_error_and_leaves_no_half_export(
    pipe, folder, tmp_path, monkeypatch
):
    import errno

    from grounded_sam.export import _io

    real_fsync = os.fsync

    def failing_disk(fd):  # an I/O error on the PNG mask of x\y.png only
        if "x_y~" in os.readlink(f"/proc/self/fd/{fd}") and ".png." in os.readlink(
            f"/proc/self/fd/{fd}"
        ):
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(_io.os, "fsync", failing_disk)
    out = tmp_path / "eio"
    summary = run(pipe, folder, out)
    reasons = {s["file_name"]: s["reason"] for s in summary.skipped}
    assert reasons["x\\y.png"].startswith("export failed: OSError: [Errno 5]")
    assert "x_y~" in reasons["x\\y.png"]  # names the file
    assert not [p for p in out.rglob("x_y~*") if p.is_file()]  # its YOLO label was removed
    assert "x/y.png" not in reasons and "a.png" not in reasons
