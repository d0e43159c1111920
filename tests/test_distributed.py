"""Sharded labelling: the split, shards into one shared folder, merge = one unsharded run."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import grounded_sam as gs
from grounded_sam.autolabel import (
    ConfigMismatchError,
    ImageItem,
    IncompleteShardsError,
    MergeError,
    Shard,
    ShardProgress,
    list_images,
    merge_shards,
    shard_of,
)
from grounded_sam.autolabel.shards import shard_sizes
from grounded_sam.cli import EXIT_INCOMPLETE, main

sys.path.insert(0, str(Path(__file__).parent))
from test_autolabel import CLASSES, finished_images, make_folder, tree  # noqa: E402

FINAL_FILES = ("annotations.coco.json", "errors.jsonl", "summary.json")
ALL_FORMATS = "coco,yolo,png"


@pytest.fixture(scope="module")
def pipe():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield gs.Pipeline.tiny_random(CLASSES, top_k=2)
    torch.set_num_threads(before)


def names(n: int) -> list[str]:
    return [f"dir{i % 7}/photo_{i:05d}.jpg" for i in range(n)]


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5, 8, 100, 130])
def test_the_shards_partition_the_images_whatever_the_listing_order(count):
    listed = names(100)
    shards = shard_of(listed, count)
    assert sorted(shards) == sorted(listed) and set(shards.values()) <= set(range(count))
    sizes = [list(shards.values()).count(k) for k in range(count)]
    assert sum(sizes) == 100 and max(sizes) - min(sizes) <= 1  # balanced: at most one apart
    assert sizes == shard_sizes(100, count)

    shuffled = listed[:]
    random.Random(count).shuffle(shuffled)
    assert shard_of(shuffled, count) == shards  # independent of the listing order

    # shard k is the k-th run of the names sorted by sha1: the id depends on the name only
    by_id = sorted(listed, key=lambda n: hashlib.sha1(n.encode("utf-8")).hexdigest())
    assert [shards[n] for n in by_id] == sorted(shards.values())

    items = [ImageItem(Path("/data") / n, n) for n in shuffled]
    selected = [Shard(k, count).select(items) for k in range(count)]
    assert sorted(it.file_name for sel in selected for it in sel) == sorted(listed)
    assert all([it for it in items if it in sel] == sel for sel in selected)  # listing order


@pytest.mark.parametrize(
    "text, expected",
    [("0/4", Shard(0, 4)), (" 3 / 4 ", Shard(3, 4)), ((1, 2), Shard(1, 2)), ("0/1", Shard(0, 1))],
)
def test_shard_parse(text, expected):
    assert Shard.parse(text) == expected
    assert Shard.parse(str(expected)) == expected
    assert expected.tag == f"shard-{expected.index}-of-{expected.count}"


@pytest.mark.parametrize("bad", ["4/4", "-1/4", "0/0", "1", "a/b", "1/2/3", (3, 2)])
def test_a_shard_that_does_not_exist_is_refused(bad):
    with pytest.raises(ValueError, match="0/|K/N|index, count"):
        Shard.parse(bad)


def label(pipe, images: Path, out: Path, **kw):
    return gs.auto_label(pipe, images, CLASSES, out, formats=ALL_FORMATS, progress=False, **kw)


def test_two_shards_then_merge_write_what_one_run_writes(pipe, tmp_path):
    images = make_folder(tmp_path / "images", n=3)
    items = list_images(images)
    per_shard = [len(Shard(k, 2).select(items)) for k in range(2)]
    assert min(per_shard) >= 1, "the test needs images in both shards"
    reference = tmp_path / "reference"
    one_run = label(pipe, images, reference)

    shared = tmp_path / "shared"
    first = label(pipe, images, shared, shard=(0, 2))
    assert first.shard == "0/2" and first.images_total == per_shard[0] and first.files == {}
    assert json.loads((shared / "summary.shard-0-of-2.json").read_text()) == first.to_dict()
    assert not (shared / "annotations.coco.json").exists()  # the merge writes the exports
    with pytest.raises(IncompleteShardsError) as err:
        merge_shards(shared)
    assert err.value.shards == [ShardProgress(Shard(1, 2), per_shard[1], per_shard[1], False)]
    assert f"shard 1/2: {per_shard[1]} of {per_shard[1]} images missing" in str(err.value)

    second = label(pipe, images, shared, shard="1/2")
    assert second.images_total == per_shard[1]
    assert first.images_labelled + second.images_labelled == one_run.images_labelled
    errors = [(shared / f"errors.shard-{k}-of-2.jsonl").read_text().splitlines() for k in (0, 1)]
    assert [json.loads(line)["file_name"] for lines in errors for line in lines] == ["broken.jpg"]

    merged = merge_shards(shared)
    assert merged.to_dict() == one_run.to_dict()
    for name in FINAL_FILES:
        assert (shared / name).read_bytes() == (reference / name).read_bytes(), name
    for sub in ("yolo/labels", "masks"):
        assert tree(shared / sub) == tree(reference / sub), sub
    assert (shared / "yolo" / "data.yaml").exists()

    # an unsharded folder is the one shard of one: merging it rewrites the same files
    before = {name: (reference / name).read_bytes() for name in FINAL_FILES}
    merge_shards(reference)
    assert {name: (reference / name).read_bytes() for name in FINAL_FILES} == before

    # the per-image results are shared: an unsharded run over the shards' folder labels
    # nothing again (but the unreadable image), and the folder then holds two splits
    whole = label(pipe, images, shared)
    assert whole.run_resumed == one_run.images_labelled and whole.run_labelled == 1
    with pytest.raises(MergeError, match="split 1 and 2 ways"):
        merge_shards(shared)
    with pytest.raises(MergeError, match="no run split 3 ways"):
        merge_shards(shared, shards=3)
    assert merge_shards(shared, shards=2).to_dict() == one_run.to_dict()
    assert (shared / "annotations.coco.json").read_bytes() == before["annotations.coco.json"]


def test_of_shards_starting_at_once_one_creates_the_configuration(tmp_path):
    from grounded_sam.autolabel.state import prepare_state

    state = tmp_path / "out" / ".state"
    configs = [{"prompt": f"cat . dog {i % 2}", "classes": ["cat", "dog"]} for i in range(8)]
    barrier = threading.Barrier(len(configs))
    outcome: list[str] = [""] * len(configs)

    def start(i: int) -> None:
        barrier.wait()
        try:
            prepare_state(state, configs[i])
            outcome[i] = "ran"
        except ConfigMismatchError:
            outcome[i] = "refused"

    threads = [threading.Thread(target=start, args=(i,)) for i in range(len(configs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    kept = json.loads((state / "config.json").read_text())
    assert kept in configs
    assert outcome == ["ran" if c == kept else "refused" for c in configs]
    assert [p.name for p in state.iterdir()] == ["config.json"]  # no temporary file left


def test_merge_says_what_an_unfinished_shard_lacks_and_can_merge_partially(pipe, tmp_path, capsys):
    images = make_folder(tmp_path / "images", n=3)
    out = tmp_path / "out"
    label(pipe, images, out, shard=(0, 2))
    label(pipe, images, out, shard=(1, 2))
    # a shard killed before it saved one image: its record (written last) is not there
    second = Shard(1, 2).select(list_images(images))
    lost = next(it for it in second if it.file_name != "broken.jpg")
    (out / ".state" / f"{lost.key}.json").unlink()
    n1 = len(second)

    with pytest.raises(IncompleteShardsError) as err:
        merge_shards(out)
    assert err.value.shards == [ShardProgress(Shard(1, 2), n1, 1, True)]
    assert f"shard 1/2: 1 of {n1} images missing" in str(err.value)
    assert "--allow-partial" in str(err.value)
    code = main(["merge", str(out), "--no-progress"])
    assert code == EXIT_INCOMPLETE == 4
    assert f"shard 1/2: 1 of {n1} images missing" in capsys.readouterr().err

    partial = merge_shards(out, allow_partial=True)
    assert partial.missing == {"1/2": 1}
    assert {"file_name": lost.file_name, "path": str(lost.path), "reason": "not labelled"} in (
        partial.skipped
    )
    coco = json.loads((out / "annotations.coco.json").read_text())
    assert lost.file_name not in {im["file_name"] for im in coco["images"]}

    # the shard resumes: it labels the lost image (and tries broken.jpg again if it has it)
    again = label(pipe, images, out, shard=(1, 2))
    assert again.run_labelled == 1 + any(it.file_name == "broken.jpg" for it in second)
    done = merge_shards(out)
    assert done.missing is None and done.images_labelled == 3
    assert "missing" not in json.loads((out / "summary.json").read_text())


def test_shards_of_another_configuration_are_refused(pipe, tmp_path):
    images = make_folder(tmp_path / "images", n=1)  # img0.png in shard 0, broken.jpg in 1
    out = tmp_path / "out"
    label(pipe, images, out, shard=(0, 2))
    with pytest.raises(ConfigMismatchError, match="prompt"):
        label(pipe, images, out, shard=(1, 2), prompt="cat . dog . bird")
    with pytest.raises(ValueError, match="other shards"):
        label(pipe, images, out, shard=(1, 2), overwrite=True)

    # someone deletes the folder's configuration and runs a shard with another prompt
    (out / ".state" / "config.json").unlink()
    label(pipe, images, out, shard=(1, 2), prompt="cat . dog . bird")
    with pytest.raises(ConfigMismatchError, match="shard.* 0/2 .*another configuration"):
        merge_shards(out)


def test_shards_that_listed_different_images_are_not_merged(pipe, tmp_path):
    images = make_folder(tmp_path / "images", n=1)
    out = tmp_path / "out"
    label(pipe, images, out, shard=(0, 2))
    (images / "broken.jpg").unlink()  # the folder changed between the two shards' starts
    label(pipe, images, out, shard=(1, 2))
    with pytest.raises(MergeError, match="listed different images"):
        merge_shards(out)
    assert merge_shards(out, allow_partial=True).images_total == 1


def test_merge_of_a_folder_without_results_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="--shard K/N"):
        merge_shards(tmp_path)
    assert main(["merge", str(tmp_path)]) == 1


def test_two_cli_processes_label_one_folder_concurrently(tmp_path, capsys):
    import torch

    images = make_folder(tmp_path / "images", n=3)
    out = tmp_path / "shared"
    argv = [str(images), "--classes", "cat,dog", "--tiny-random", "--formats", ALL_FORMATS]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # two processes share two cores
    shards = [
        subprocess.Popen(
            [sys.executable, "-m", "grounded_sam", "label", *argv, "-o", str(out)]
            + ["--shard", f"{k}/2", "--no-progress", "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for k in range(2)
    ]
    try:  # meanwhile, the unsharded reference in this process, with the same arithmetic
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            code = main(["label", *argv, "-o", str(tmp_path / "one"), "--no-progress"])
        finally:
            torch.set_num_threads(before)
        assert code == 0
        results = [p.communicate(timeout=300) for p in shards]
    finally:
        for p in shards:
            if p.poll() is None:
                p.kill()
                p.communicate()
    capsys.readouterr()
    for p, (_, stderr) in zip(shards, results, strict=True):
        assert p.returncode == 0, stderr
    summaries = [json.loads(stdout) for stdout, _ in results]
    assert [s["shard"] for s in summaries] == ["0/2", "1/2"]
    assert sum(s["images_total"] for s in summaries) == 4
    assert len(finished_images(out)) == 3

    assert main(["merge", str(out), "--no-progress"]) == 0
    assert "labelled 3 of 4 images" in capsys.readouterr().out
    for name in FINAL_FILES:
        assert (out / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name
