"""The summary's numbers add up: what it says each export holds is what the files hold."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import grounded_sam as gs
from grounded_sam.cli import main

CLASSES = ["cat", "dog"]


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    import torch

    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("counts")
    rng = np.random.default_rng(1)
    for i in range(3):
        pixels = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"img{i}.png")
    # a class list the random detector's phrases mostly miss: detections without a class
    pipe = gs.Pipeline.tiny_random(CLASSES, top_k=4)
    out = root / "out"
    summary = gs.auto_label(pipe, root, CLASSES, out, formats="coco,yolo,png", progress=False)
    return out, summary


def test_each_export_holds_the_detections_the_summary_says(labelled):
    out, summary = labelled
    coco = json.loads((out / "annotations.coco.json").read_text())
    lines = [
        line
        for path in sorted((out / "yolo" / "labels").rglob("*.txt"))
        for line in path.read_text().splitlines()
    ]
    instances = [
        inst
        for path in sorted((out / "masks").rglob("*.json"))
        for inst in json.loads(path.read_text())["instances"]
    ]
    assert summary.exported == {
        "coco": len(coco["annotations"]),
        "yolo": len(lines),
        "png": len(instances),
    }
    assert summary.detections_total == len(instances)
    unknown = sum(inst["class_id"] == -1 for inst in instances)
    assert summary.detections_without_class == unknown
    assert sum(summary.detections_per_class.values()) + unknown == summary.detections_total
    # COCO and YOLO hold the detections with a class and a mask: the same ones
    with_class = [i for i in instances if i["class_id"] >= 0 and i["area"] > 0]
    assert len(coco["annotations"]) == len(lines) == len(with_class)
    assert json.loads((out / "summary.json").read_text())["exported"] == summary.exported


def test_the_cli_says_where_detections_without_a_class_went(tmp_path, capsys):
    rng = np.random.default_rng(2)
    Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    out = tmp_path / "out"
    code = main(
        ["label", str(tmp_path), "--classes", "cat,dog", "-o", str(out), "--tiny-random",
         "--formats", "coco,yolo,png", "--no-progress"]
    )  # fmt: skip
    text = capsys.readouterr().out
    assert code == 0, text
    summary = json.loads((out / "summary.json").read_text())
    exported = summary["exported"]
    assert f"coco: {out}/annotations.coco.json — {exported['coco']} annotations" in text
    assert f"png: {out}/masks — {exported['png']} instances: every detection" in text
    assert f"train: yolo segment train data={out}/yolo/data.yaml" in text
    if summary["detections_without_class"]:
        assert f"the {summary['detections_without_class']} detections without a class" in text
