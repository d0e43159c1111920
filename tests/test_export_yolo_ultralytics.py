"""The YOLO export read by its real consumer: Ultralytics' dataset check, its ``YOLODataset``
and (slow) one epoch of training of an untrained ``yolov8n-seg.yaml`` on the CPU.

Ultralytics is a test dependency (``scripts/test.sh``); no weights and no fonts are fetched:
``YOLO_OFFLINE=1``, its settings go to a temporary folder, and the model is built from its yaml.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

import grounded_sam as gs

CLASSES = ["cat", "dog"]


@pytest.fixture(scope="module")
def ultralytics(tmp_path_factory):
    """The ``ultralytics`` module, set up offline with its settings in a temporary folder.

    Importing it changes the process: it replaces ``PIL.Image.open`` (a HEIF plugin that it
    would pip-install on the first unknown file), sets OpenCV's threads to 0 and, when
    training on the CPU, PyTorch's. All of that is put back afterwards, so the tests that run
    later in this process see the libraries as they were.
    """
    import cv2
    import PIL.Image
    import torch

    saved_env = {k: os.environ.get(k) for k in ("YOLO_OFFLINE", "YOLO_CONFIG_DIR")}
    saved = (PIL.Image.open, cv2.getNumThreads(), torch.get_num_threads())
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_CONFIG_DIR"] = str(tmp_path_factory.mktemp("ultralytics-settings"))
    try:
        yield pytest.importorskip("ultralytics")
    finally:
        PIL.Image.open = saved[0]
        cv2.setNumThreads(saved[1])
        torch.set_num_threads(saved[2])
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A folder of 6 images labelled by the tiny random pipeline into ``out/yolo``, with a
    train/val split."""
    import torch

    root = tmp_path_factory.mktemp("yolo-data")
    images = root / "photos"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        pixels = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(images / f"img{i}.{'jpg' if i % 2 else 'png'}")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    pipe = gs.Pipeline.tiny_random(CLASSES, top_k=3)
    summary = gs.auto_label(
        pipe, images, CLASSES, root / "out", formats="yolo", progress=False, yolo_val=0.34
    )
    torch.set_num_threads(before)
    return root / "out" / "yolo", summary


def test_data_yaml_is_plain_yaml_with_a_split(dataset):
    yolo, _ = dataset
    data = yaml.safe_load((yolo / "data.yaml").read_text())
    assert data == {
        "path": str(yolo.resolve()),
        "train": "images/train",
        "val": "images/val",
        "nc": 2,
        "names": {0: "cat", 1: "dog"},
    }
    train = sorted(p.name for p in (yolo / "images" / "train").iterdir())
    val = sorted(p.name for p in (yolo / "images" / "val").iterdir())
    assert len(val) == 2 and len(train) == 4 and not set(train) & set(val)
    for sub, names in (("train", train), ("val", val)):
        for name in names:
            assert (yolo / "images" / sub / name).is_symlink()
            assert (yolo / "labels" / sub / Path(name).with_suffix(".txt")).is_file()


def test_ultralytics_checks_the_dataset_and_reads_every_label(ultralytics, dataset):
    from ultralytics.cfg import get_cfg
    from ultralytics.data import YOLODataset
    from ultralytics.data.utils import check_det_dataset

    yolo, summary = dataset
    data = check_det_dataset(str(yolo / "data.yaml"))
    assert Path(data["train"]) == (yolo / "images" / "train").resolve()
    assert data["nc"] == 2 and data["names"] == {0: "cat", 1: "dog"}
    polygons = 0
    for split in ("train", "val"):
        ds = YOLODataset(
            img_path=data[split], data=data, task="segment", imgsz=64, augment=False,
            hyp=get_cfg(), cache=False,
        )  # fmt: skip
        assert len(ds) == len(list((yolo / "images" / split).iterdir()))
        for label in ds.labels:
            ours = yolo / "labels" / split / Path(label["im_file"]).with_suffix(".txt").name
            lines = ours.read_text().splitlines()
            assert len(label["cls"]) == len(label["segments"]) == len(lines)
            assert label["cls"].ravel().tolist() == [int(line.split()[0]) for line in lines]
            polygons += len(lines)
    # every detection with a class is one polygon line (mode="merge"): the counts add up
    assert polygons == sum(summary.detections_per_class.values()) > 0


@pytest.mark.slow
def test_an_untrained_yolov8n_seg_trains_one_epoch_on_the_export(ultralytics, dataset, tmp_path):
    from ultralytics import YOLO

    yolo, _ = dataset
    model = YOLO("yolov8n-seg.yaml")  # the architecture from its yaml: random weights
    model.train(
        data=str(yolo / "data.yaml"), epochs=1, imgsz=64, batch=2, device="cpu", workers=0,
        project=str(tmp_path), name="run", amp=False, plots=False, val=True, verbose=False,
    )  # fmt: skip
    weights = tmp_path / "run" / "weights" / "last.pt"
    assert weights.is_file()
