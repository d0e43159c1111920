"""auto_label over a temporary folder with the tiny random pipeline: skipping, resuming, exports."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import grounded_sam as gs
from grounded_sam.autolabel import ConfigMismatchError, list_images

CLASSES = ["cat", "dog"]
WORKER = Path(__file__).with_name("autolabel_worker.py")
FINAL_FILES = ("annotations.coco.json", "errors.jsonl", "summary.json")


@pytest.fixture(scope="module")
def pipe():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield gs.Pipeline.tiny_random(CLASSES, top_k=2)
    torch.set_num_threads(before)


def make_folder(root: Path, n: int = 3) -> Path:
    """``n`` small images (one in a sub-folder, one JPEG), a corrupt ``broken.jpg`` and a text
    file that is not an image."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        pixels = rng.integers(0, 256, (40 + 4 * i, 56, 3), dtype=np.uint8)
        path = root / ("sub" if i == 1 else "") / f"img{i}.{'jpg' if i == 2 else 'png'}"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(pixels).save(path)
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    (root / "notes.txt").write_text("not an image")
    return root


def test_a_bad_image_is_listed_and_the_others_are_labelled(pipe, tmp_path):
    from pycocotools.coco import COCO

    images = make_folder(tmp_path / "images")
    out = tmp_path / "out"
    summary = gs.auto_label(pipe, images, CLASSES, out, formats="coco,yolo,png", progress=False)

    assert summary.images_total == 4
    assert summary.images_labelled == 3
    assert [s["file_name"] for s in summary.skipped] == ["broken.jpg"]
    assert summary.skipped[0]["reason"]
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert errors == summary.skipped
    assert json.loads((out / "summary.json").read_text()) == summary.to_dict()

    coco = COCO(str(out / "annotations.coco.json"))
    files = {im["file_name"]: im for im in coco.dataset["images"]}
    assert sorted(files) == ["img0.png", "img2.jpg", "sub/img1.png"]
    assert files["img2.jpg"]["height"] == 48 and files["img2.jpg"]["width"] == 56
    # ids follow the sorted listing, the skipped image keeps its number
    assert [files[f]["id"] for f in ("img0.png", "img2.jpg", "sub/img1.png")] == [2, 3, 4]
    assert [c["name"] for c in coco.dataset["categories"]] == CLASSES
    anns = coco.dataset["annotations"]
    assert (
        sum(summary.detections_per_class.values())
        == len(anns) + coco.dataset["info"]["dropped_empty"]
    )
    assert (
        summary.detections_total
        == len(anns) + summary.detections_without_class + (coco.dataset["info"]["dropped_empty"])
    )
    for ann in anns:
        assert coco.annToMask(ann).sum() == ann["area"]
    sidecars = [json.loads(p.read_text()) for p in (out / "masks").rglob("*.json")]
    assert len(sidecars) == 3  # PNG sidecars keep every detection, with or without a class
    flags = [inst["needs_review"] for side in sidecars for inst in side["instances"]]
    assert len(flags) == summary.detections_total
    assert summary.review_count == sum(flags)
    assert (out / "yolo" / "data.yaml").exists()
    labels = out / "yolo" / "labels"
    assert sorted(p.relative_to(labels).as_posix() for p in labels.rglob("*.txt")) == [
        "img0.txt",
        "img2.txt",
        "sub/img1.txt",
    ]
    assert summary.files == {"coco": "annotations.coco.json", "yolo": "yolo", "png": "masks"}


def plain_pngs(root: Path, n: int, seed: int) -> Path:
    """``n`` random 32x40 RGB images ``0.png`` … in ``root``."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)).save(root / f"{i}.png")
    return root


def record_calls(monkeypatch, name: str, *modules) -> tuple[Any, list]:
    """Record the first argument of each call of ``name`` (patched in every module given, the
    first one defining it); the real function still runs. Returns ``(real, calls)``."""
    real, calls = getattr(modules[0], name), []

    def recording(first, *args, **kwargs):
        calls.append(first)
        return real(first, *args, **kwargs)

    for module in modules:
        monkeypatch.setattr(module, name, recording)
    return real, calls


def test_each_image_is_decoded_once(pipe, tmp_path, monkeypatch):
    import grounded_sam.image

    images = plain_pngs(tmp_path / "in", 3, seed=1)
    _, calls = record_calls(monkeypatch, "load_image", grounded_sam.image)
    summary = gs.auto_label(pipe, images, CLASSES, tmp_path / "out", progress=False)
    assert summary.images_labelled == 3
    assert sorted(Path(src).name for src in calls) == ["0.png", "1.png", "2.png"]


def test_coco_only_decodes_no_mask(pipe, tmp_path, monkeypatch):
    """The state record's RLE goes into the COCO file as it is, area and box read from the
    runs: neither our decoder nor pycocotools' is called, and the record's RLE, area and box
    are the annotation's."""
    import pycocotools.mask

    import grounded_sam.export.coco
    import grounded_sam.masks
    import grounded_sam.types
    from grounded_sam.autolabel import list_images
    from grounded_sam.autolabel.state import STATE_DIR, read_json, record_path

    images = plain_pngs(tmp_path / "in", 2, seed=2)
    modules = (grounded_sam.masks, grounded_sam.types, grounded_sam.export.coco)
    real, decodes = record_calls(monkeypatch, "rle_to_mask", *modules)
    _, coco_decodes = record_calls(monkeypatch, "decode", pycocotools.mask)
    out = tmp_path / "out"
    summary = gs.auto_label(pipe, images, CLASSES, out, formats="coco", progress=False)
    assert summary.images_labelled == 2 and summary.detections_total > 0
    assert decodes == [] and coco_decodes == []
    coco = json.loads((out / "annotations.coco.json").read_text())
    for ann in coco["annotations"]:  # area and box read from the RLE agree with its pixels
        mask = real(ann["segmentation"])
        ys, xs = np.nonzero(mask)
        assert ann["area"] == mask.sum()
        assert ann["bbox"] == [xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()]

    # the record's RLE, unchanged, in the record's order (the kept ones: a class, a mask)
    ids = {im["file_name"]: im["id"] for im in coco["images"]}
    written = []
    for item in list_images(images):
        record = read_json(record_path(out / STATE_DIR, item))
        for entry in record["detections"]["detections"]:
            if entry["class_id"] >= 0 and grounded_sam.masks.rle_area([entry["mask"]])[0] > 0:
                written.append((ids[item.file_name], entry["mask"], entry["class_id"] + 1))
    assert [(a["image_id"], a["segmentation"], a["category_id"]) for a in coco["annotations"]] == (
        written
    )
    assert len(written) > 0


def test_a_second_run_resumes_and_writes_the_same_files(pipe, tmp_path):
    images = make_folder(tmp_path / "images", n=2)
    out = tmp_path / "out"
    first = gs.auto_label(pipe, images, CLASSES, out, progress=False)
    before = {name: (out / name).read_bytes() for name in FINAL_FILES}
    assert first.run_labelled == 3 and first.run_resumed == 0

    again = gs.auto_label(pipe, images, CLASSES, out, progress=False)
    assert again.run_resumed == 2  # finished images are skipped; the broken one is retried
    assert again.run_labelled == 1
    assert {name: (out / name).read_bytes() for name in FINAL_FILES} == before

    # an image that changed on disk is labelled again
    img = images / "img0.png"
    Image.fromarray(np.zeros((40, 56, 3), np.uint8)).save(img)
    third = gs.auto_label(pipe, images, CLASSES, out, progress=False)
    assert third.run_resumed == 1 and third.run_labelled == 2

    fresh = gs.auto_label(pipe, images, CLASSES, tmp_path / "fresh", progress=False)
    assert fresh.to_dict() == third.to_dict()
    coco = (tmp_path / "fresh" / "annotations.coco.json").read_bytes()
    assert coco == (out / "annotations.coco.json").read_bytes()


def test_another_configuration_is_refused_unless_overwritten(pipe, tmp_path):
    images = make_folder(tmp_path / "images", n=1)
    out = tmp_path / "out"
    gs.auto_label(pipe, images, CLASSES, out, progress=False)
    with pytest.raises(ConfigMismatchError, match="overwrite") as err:
        gs.auto_label(pipe, images, CLASSES, out, prompt="cat . dog . bird", progress=False)
    assert "prompt" in str(err.value)
    with pytest.raises(ConfigMismatchError, match="classes"):
        gs.auto_label(pipe, images, ["dog", "cat"], out, progress=False)

    summary = gs.auto_label(pipe, images, ["dog", "cat"], out, overwrite=True, progress=False)
    assert summary.run_labelled == 2 and summary.run_resumed == 0
    coco = json.loads((out / "annotations.coco.json").read_text())
    assert [c["name"] for c in coco["categories"]] == ["dog", "cat"]


def test_inputs_as_glob_list_or_folder_with_the_output_inside(pipe, tmp_path):
    images = make_folder(tmp_path / "images")
    by_glob = list_images(str(images / "**" / "*.png"))
    assert [i.file_name for i in by_glob] == ["img0.png", "sub/img1.png"]
    listed = list_images([images / "img2.jpg", images / "sub" / "img1.png"])
    assert [i.file_name for i in listed] == ["img2.jpg", "sub/img1.png"]
    assert [i.file_name for i in list_images(images / "img2.jpg")] == ["img2.jpg"]

    small = make_folder(tmp_path / "small", n=1)
    out = small / "labels"  # the output inside the input folder is not read as input
    gs.auto_label(pipe, small, CLASSES, out, formats=["png"], progress=False)
    assert (out / "masks" / "img0.png").exists()
    second = gs.auto_label(pipe, small, CLASSES, out, formats=["png"], progress=False)
    assert second.images_total == 2
    assert second.run_resumed == 1

    with pytest.raises(FileNotFoundError, match="no images found"):
        gs.auto_label(pipe, tmp_path / "nothing-*.png", CLASSES, tmp_path / "o", progress=False)
    with pytest.raises(ValueError, match="unknown export format"):
        gs.auto_label(pipe, images, CLASSES, tmp_path / "o", formats="coco,voc", progress=False)


def test_decoding_runs_ahead_by_a_bounded_number_of_images(tmp_path, monkeypatch):
    import grounded_sam.image
    from grounded_sam.autolabel.prefetch import prefetch

    images = make_folder(tmp_path / "images", n=3)
    items = list_images(images)
    loaded: list[str] = []
    real = grounded_sam.image.load_image

    def counting(src, **kw):
        loaded.append(str(src))
        return real(src, **kw)

    monkeypatch.setattr(grounded_sam.image, "load_image", counting)
    stream = prefetch(items, depth=1)
    first = next(stream)
    time.sleep(0.5)  # a consumer busy with inference: the decoder may only fill one slot
    assert len(loaded) <= 3  # the one consumed, one queued, one waiting to be queued
    rest = list(stream)
    assert [r[0] for r in [first, *rest]] == items
    assert [r[2] is not None for r in [first, *rest]] == [True, False, False, False]


class InterruptedPipeline:
    """The real pipeline, with a Ctrl-C arriving during its ``calls``-th image."""

    def __init__(self, pipe, calls: int):
        self.pipe, self.segmenter, self.left = pipe, pipe.segmenter, calls

    def __call__(self, image, prompt, classes=None):
        self.left -= 1
        if self.left == 0:
            raise KeyboardInterrupt
        return self.pipe(image, prompt, classes=classes)

    def config(self):
        return self.pipe.config()


def test_ctrl_c_stops_the_decoder_thread_and_the_run_resumes(pipe, tmp_path):
    import threading

    images = make_folder(tmp_path / "images", n=3)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        gs.auto_label(InterruptedPipeline(pipe, 2), images, CLASSES, out, progress=False)
    assert not any(t.name == "grounded-sam-decode" for t in threading.enumerate())
    assert finished_images(out) == ["img0.png"]  # broken.jpg failed, img0 done, img2 cut short
    assert not (out / "annotations.coco.json").exists()

    summary = gs.auto_label(pipe, images, CLASSES, out, progress=False)
    assert summary.run_resumed == 1 and summary.images_labelled == 3


def finished_images(out: Path) -> list[str]:
    """File names of the images whose results a run has saved (state files are atomic)."""
    records = [json.loads(p.read_text()) for p in (out / ".state").glob("*.json")]
    return [r["file_name"] for r in records if r.get("status") == "ok"]


def run_worker(images: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(images), str(out), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_run_killed_part_way_resumes_to_the_same_files(tmp_path):
    images = make_folder(tmp_path / "images", n=4)

    reference = run_worker(images, tmp_path / "reference")
    stdout, stderr = reference.communicate(timeout=300)
    assert reference.returncode == 0, stderr
    assert json.loads(stdout)["images_labelled"] == 4

    out = tmp_path / "killed"
    slow = run_worker(images, out, "--delay", "2")
    try:
        deadline = time.monotonic() + 240
        while not finished_images(out):
            assert slow.poll() is None, slow.communicate()[1]
            assert time.monotonic() < deadline, "no image finished in time"
            time.sleep(0.05)
        os.kill(slow.pid, signal.SIGKILL)
    finally:
        slow.kill()
        slow.communicate()
    assert slow.returncode == -signal.SIGKILL
    assert not (out / "summary.json").exists()
    assert 1 <= len(finished_images(out)) < 4

    resumed = run_worker(images, out)
    stdout, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr
    report = json.loads(stdout)
    assert report["resumed"] >= 1 and report["resumed"] + report["labelled"] == 5
    for name in FINAL_FILES:
        assert (out / name).read_bytes() == (tmp_path / "reference" / name).read_bytes(), name
    for sub in ("yolo/labels", "masks"):
        assert tree(out / sub) == tree(tmp_path / "reference" / sub), sub


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_yolo_split_is_refused_with_a_shard(tmp_path):
    with pytest.raises(ValueError, match="cannot be combined with a shard"):
        gs.auto_label(None, tmp_path, CLASSES, tmp_path / "out", shard="0/2", yolo_val=0.2)
