"""The grounded-sam command: help texts, exit codes, label with --tiny-random, eval, download, info."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from grounded_sam.cli import main
from grounded_sam.cli.common import NO_MALLOC_TUNING_ENV

sys.path.insert(0, str(Path(__file__).parent))
from test_autolabel import make_folder  # noqa: E402


@pytest.fixture(autouse=True)
def _keep_this_process_malloc(monkeypatch):
    """`label` tunes glibc malloc for its process; the in-process runs here opt out so the test
    process keeps its defaults (test_label_tunes_malloc_in_its_process checks the tuning)."""
    monkeypatch.setenv(NO_MALLOC_TUNING_ENV, "1")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """main(argv) -> (exit code, stdout, stderr); argparse's SystemExit counts as a return."""
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "argv, expected",
    [
        ([], ["label", "merge", "eval", "download", "info", "exit codes"]),
        (["label"], ["--classes", "--prompt", "--formats", "--sam", "--detector", "--tiny-random",
                      "--device", "--box-threshold", "--overwrite", "--fail-on-skip", "--shard",
                      "--fast", "GROUNDED_SAM_FORCE_FP32", NO_MALLOC_TUNING_ENV, "exit codes"]),
        (["merge"], ["OUT", "--allow-partial", "--formats", "--shards", "--json", "exit codes"]),
        (["eval"], ["predictions", "ground_truth", "--json", "--iou-types"]),
        (["download"], ["NAME", "--all", "--list", "--models-dir"]),
        (["info"], ["--models-dir", "--json"]),
    ],
)  # fmt: skip
def test_help_exits_0_and_names_the_key_options(capsys, argv, expected):
    code, out, _ = run(capsys, *argv, "--help")
    assert code == 0
    for word in expected:
        assert word in out, word


def test_the_installed_command_and_python_m_work():
    command = shutil.which("grounded-sam") or str(Path(sys.executable).with_name("grounded-sam"))
    for argv in ([command, "--help"], [sys.executable, "-m", "grounded_sam", "label", "--help"]):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "usage: grounded-sam" in done.stdout


@pytest.mark.parametrize(
    "argv, message",
    [
        (["label", "imgs", "-o", "out"], "--classes or --prompt"),
        (["label", "imgs", "-o", "out", "--classes", "cat", "--formats", "voc"], "unknown format"),
        (["label", "imgs", "-o", "out", "--classes", "cat", "--box-threshold", "2"], "between 0 and 1"),
        (["label", "imgs", "-o", "out", "--classes", "cat", "--synonym", "kitten"], "CLASS=ALIAS"),
        (["label", "imgs"], "-o/--out"),
        (["label", "imgs", "-o", "out", "--classes", "cat", "--shard", "2/2"], "0/2 … 1/2"),
        (["label", "imgs", "-o", "out", "--classes", "cat", "--shard", "half"], "K/N"),
        (["label", "imgs", "-o", "out", "--classes", "cat", "--shard", "0/2", "--overwrite"],
         "--overwrite cannot be combined with --shard"),
        (["merge", "out", "--formats", "voc"], "unknown format"),
        (["eval", "p.json", "g.json", "--iou-types", "keypoints"], "--iou-types"),
        (["download"], "give model names, or --all"),
        (["download", "--list", "sam_vit_b"], "--list takes no model names"),
        (["frobnicate"], "invalid choice"),
    ],
)  # fmt: skip
def test_usage_errors_exit_2(capsys, argv, message):
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert message in err


def test_label_a_folder_with_tiny_random_models(capsys, tmp_path):
    images = make_folder(tmp_path / "images")
    out = tmp_path / "out"
    argv = ["label", str(images), "-o", str(out), "--classes", "cat,dog", "--tiny-random"]
    code, stdout, stderr = run(capsys, *argv, "--formats", "coco,yolo,png", "--no-progress")
    assert code == 0, stderr
    assert "labelled 3 of 4 images" in stdout
    assert "broken.jpg" in stderr and "skipped" in stderr
    coco = json.loads((out / "annotations.coco.json").read_text())
    assert [c["name"] for c in coco["categories"]] == ["cat", "dog"]
    assert len(coco["images"]) == 3
    assert (out / "yolo" / "data.yaml").exists() and (out / "masks" / "img0.png").exists()

    # again: everything is resumed; --fail-on-skip turns the unreadable image into exit code 3
    code, stdout, _ = run(capsys, *argv, "--formats", "coco", "--fail-on-skip", "--json")
    assert code == 3
    summary = json.loads(stdout)
    assert summary["images_labelled"] == 3 and summary["images_skipped"] == 1
    assert summary == {**json.loads((out / "summary.json").read_text()), "out_dir": str(out)}

    # another class list into the same folder is refused with a way out
    code, _, stderr = run(capsys, *argv[:-3], "--classes", "cat,bird", "--tiny-random")
    assert code == 1
    assert "--overwrite" in stderr and "classes" in stderr


def test_label_without_checkpoints_says_how_to_fetch_them(capsys, tmp_path):
    images = make_folder(tmp_path / "images", n=1)
    argv = ["label", str(images), "-o", str(tmp_path / "out"), "--prompt", "cat . dog"]
    code, _, stderr = run(capsys, *argv, "--models-dir", str(tmp_path / "models"))
    assert code == 1
    assert "grounded-sam download sam_vit_b" in stderr
    code, _, stderr = run(
        capsys, "label", str(tmp_path / "none-*.jpg"), "-o", "o", "--classes", "a"
    )
    assert code == 1 and "no images found" in stderr


def test_eval_of_an_export_against_itself_is_perfect(capsys, tmp_path):
    images = make_folder(tmp_path / "images")
    out = tmp_path / "out"
    code, _, stderr = run(
        capsys, "label", str(images), "-o", str(out), "--classes", "cat,dog", "--tiny-random",
        "--no-progress",
    )  # fmt: skip
    assert code == 0, stderr
    export = str(out / "annotations.coco.json")
    assert json.loads(Path(export).read_text())["annotations"], "the test needs some annotations"

    code, stdout, _ = run(capsys, "eval", export, export, "--json")
    assert code == 0
    metrics = json.loads(stdout)
    assert metrics["bbox"]["AP"] == 1.0 and metrics["segm"]["AP"] == 1.0

    code, stdout, _ = run(capsys, "eval", export, export)
    assert code == 0
    rows = {line.split()[0]: line.split() for line in stdout.splitlines()}
    assert rows["type"][1] == "AP" and rows["bbox"][1] == "1.000" and rows["segm"][1] == "1.000"

    code, _, stderr = run(capsys, "eval", str(out / "missing.json"), export)
    assert code == 1 and "missing.json" in stderr


def test_download_list_and_unknown_names(capsys, tmp_path):
    code, stdout, _ = run(capsys, "download", "--list", "--models-dir", str(tmp_path))
    assert code == 0
    for name in ("sam_vit_b", "sam_vit_h", "grounding_dino_tiny", "clip_vit_b32"):
        assert name in stdout
    assert "missing" in stdout and "present" not in stdout

    code, _, stderr = run(capsys, "download", "sam_vit_x", "--models-dir", str(tmp_path))
    assert code == 1 and "unknown model" in stderr and "sam_vit_b" in stderr
    assert not any(tmp_path.iterdir())  # nothing was fetched or created


def test_info_reports_models_and_device(capsys, tmp_path):
    code, stdout, _ = run(capsys, "info", "--json", "--models-dir", str(tmp_path))
    assert code == 0
    info = json.loads(stdout)
    assert info["models_dir"] == str(tmp_path.absolute())
    assert info["models"]["sam_vit_b"]["present"] is False
    assert set(info["device"]) >= {"default", "cuda_available", "cuda_bf16", "cpu_fast_bf16"}
    assert "torch" in info["versions"]
    assert info["device"]["cpu"]["fast_dtype"] in ("bfloat16", "float32")
    assert set(info["device"]["cpu"]["isa"]) >= {"avx2", "avx512f", "avx512_bf16", "amx_bf16"}


@pytest.mark.cpu_kind
def test_info_prints_the_cpu_its_instruction_sets_and_what_fast_picks(capsys, tmp_path):
    from grounded_sam import runtime

    code, stdout, _ = run(capsys, "info", "--models-dir", str(tmp_path))
    assert code == 0
    assert f"cpu: {runtime.cpu_model()}" in stdout
    assert "isa: avx2" in stdout and "amx_bf16" in stdout
    assert "fast: bfloat16" in stdout or "fast: float32" in stdout

    code, stdout, _ = run(capsys, "info", "--models-dir", str(tmp_path))
    assert code == 0
    assert "sam_vit_b" in stdout and "grounded-sam download" in stdout


def test_label_with_the_clip_detector(capsys, tmp_path):
    images = make_folder(tmp_path / "images", n=1)
    out = tmp_path / "out"
    code, stdout, stderr = run(
        capsys, "label", str(images), "-o", str(out), "--classes", "cat,dog", "--tiny-random",
        "--detector", "clip", "--clip-threshold", "0", "--top-k", "2", "--json", "--no-progress",
    )  # fmt: skip
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert summary["images_labelled"] == 1
    assert 0 < summary["detections_total"] <= 2
    config = json.loads((out / ".state" / "config.json").read_text())
    assert config["pipeline"]["detector"]["type"] == "ClipMaskDetector"
    assert config["pipeline"]["top_k"] == 2


@pytest.mark.cpu_kind
def test_label_fast_reaches_the_fast_models_and_is_part_of_the_configuration(capsys, tmp_path):
    images = make_folder(tmp_path / "images", n=1)
    argv = ["label", str(images), "--classes", "cat,dog", "--tiny-random", "--no-progress"]

    code, _, stderr = run(capsys, *argv, "-o", str(tmp_path / "exact"))
    assert code == 0, stderr
    exact = json.loads((tmp_path / "exact" / ".state" / "config.json").read_text())["pipeline"]
    assert exact["segmenter"]["fast"] is False and exact["segmenter"]["fast_decoder"] is False
    assert exact["detector"]["fast"] is False and "fast_compute_dtype" not in exact

    code, _, stderr = run(capsys, *argv, "-o", str(tmp_path / "fast"), "--fast")
    assert code == 0, stderr
    fast = json.loads((tmp_path / "fast" / ".state" / "config.json").read_text())["pipeline"]
    assert fast["segmenter"]["fast"] is True and fast["segmenter"]["fast_decoder"] is True
    assert fast["detector"]["fast"] is True and "fast_compute_dtype" in fast
    coco = json.loads((tmp_path / "fast" / "annotations.coco.json").read_text())
    assert len(coco["images"]) == 1

    # exact results are not resumed by a fast run (outputs differ): a clear refusal instead
    code, _, stderr = run(capsys, *argv, "-o", str(tmp_path / "exact"), "--fast")
    assert code == 1 and "fast" in stderr and "--overwrite" in stderr


_MALLOC_PROBE = """
import ctypes, json, sys
import numpy as np
from grounded_sam.cli import common, main

class Info(ctypes.Structure):  # glibc's struct mallinfo2
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split())]

mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
mallinfo2.restype = Info
code = main(sys.argv[1:]) if len(sys.argv) > 1 else None
before = mallinfo2().hblkhd
block = np.ones(64 * 2**20, np.uint8)  # glibc's default: served by mmap (over 32 MiB)
print(json.dumps({"code": code, "tuned": common.tune_malloc(),
                  "mmapped": mallinfo2().hblkhd - before}))
"""


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or __import__("platform").libc_ver()[0] != "glibc",
    reason="malloc tuning is glibc-only",
)
def test_label_tunes_malloc_in_its_process_unless_opted_out(tmp_path):
    import os

    images = make_folder(tmp_path / "images", n=1)
    argv = ["label", str(images), "-o", str(tmp_path / "out"), "--classes", "cat",
            "--tiny-random", "--no-progress"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != NO_MALLOC_TUNING_ENV}
    done = subprocess.run(
        [sys.executable, "-c", _MALLOC_PROBE, *argv], env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    probe = json.loads(done.stdout.strip().splitlines()[-1])
    # after `label`, a 64 MiB block comes from the heap, not from a fresh mmap
    assert probe == {"code": 0, "tuned": True, "mmapped": 0}

    env[NO_MALLOC_TUNING_ENV] = "1"
    done = subprocess.run(
        [sys.executable, "-c", _MALLOC_PROBE], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    probe = json.loads(done.stdout.strip().splitlines()[-1])
    assert probe["tuned"] is False and probe["mmapped"] >= 64 * 2**20


def test_label_threads_sets_the_processes_torch_threads(tmp_path):
    """``--threads N`` is PyTorch's thread count for the run (in a child process: it is
    process-wide); without it PyTorch's default stays."""
    images = make_folder(tmp_path / "images", n=1)
    probe = (
        "import sys, torch\n"
        "from grounded_sam.cli import main\n"
        "default = torch.get_num_threads()\n"
        "code = main(sys.argv[1:])\n"
        "print(code, default, torch.get_num_threads())\n"
    )
    base = ["label", str(images), "--classes", "cat", "--tiny-random", "--no-progress"]
    for extra, out in (([], "a"), (["--threads", "1"], "b")):
        done = subprocess.run(
            [sys.executable, "-c", probe, *base, "-o", str(tmp_path / out), *extra],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        code, default, after = map(int, done.stdout.split()[-3:])
        assert code == 0
        assert after == (1 if extra else default)
