"""``auto_label(engine="ray")`` on a local Ray instance (2 CPUs, 2 actors): the same files as
the local engine, through a killed actor and an interrupted run."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import grounded_sam as gs

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS))
import ray_pipelines  # noqa: E402
from test_autolabel import make_folder  # noqa: E402

CLASSES = ray_pipelines.CLASSES
FORMATS = "coco,yolo,png"
N_GOOD = 6  # + broken.jpg, listed; notes.txt is not an image


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray for this file's tests; its workers import this checkout's grounded_sam and
    the recipes of ray_pipelines (the PYTHONPATH they inherit)."""
    import ray
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the local reference runs with the actors' one thread
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(Path(gs.__file__).parent.parent), str(TESTS), *([saved] if saved else [])]
    )
    context = ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=200 * 2**20,
        log_to_driver=False,
    )
    yield context
    ray.shutdown()
    torch.set_num_threads(threads)
    if saved is None:
        os.environ.pop("PYTHONPATH")
    else:
        os.environ["PYTHONPATH"] = saved


@pytest.fixture(scope="module")
def dataset(ray_cluster, tmp_path_factory):
    """A folder of N_GOOD images and a corrupt one, and the local engine's output for it."""
    root = tmp_path_factory.mktemp("ray")
    images = make_folder(root / "images", N_GOOD)
    local = root / "local" / "out"
    summary = gs.auto_label(
        ray_pipelines.tiny(), images, CLASSES, local, formats=FORMATS, progress=False
    )
    assert summary.images_labelled == N_GOOD and len(summary.skipped) == 1
    return images, local


def outputs(out: Path) -> dict[str, bytes]:
    """Every file of a run (state records too), links as their targets; ``data.yaml`` with
    the output folder's own path taken out."""
    files = {}
    for p in sorted(out.rglob("*")):
        name = p.relative_to(out).as_posix()
        if p.is_symlink():
            files[name] = os.readlink(p).encode()
        elif p.is_file():
            files[name] = p.read_bytes().replace(str(out).encode(), b"OUT")
    return files


def ray_run(recipe, images: Path, out: Path, **kw):
    return gs.auto_label(
        recipe, images, CLASSES, out, formats=FORMATS, engine="ray", actors=2, progress=False, **kw
    )


def calls(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def finished_records(out: Path) -> list[Path]:
    """The state records of the images a run has finished (records are written atomically)."""
    paths = (out / ".state").glob("*.json") if (out / ".state").is_dir() else []
    return [p for p in paths if '"status": "ok"' in p.read_text()]


def test_ray_writes_the_local_engines_files_byte_for_byte(ray_cluster, dataset, tmp_path, capsys):
    from grounded_sam.cli import main

    images, local = dataset
    out = tmp_path / "out"
    # the CLI's --tiny-random --top-k 2 is ray_pipelines.tiny(): the same configuration
    argv = ["label", str(images), "-o", str(out), "--classes", "cat,dog", "--tiny-random"]
    argv += ["--top-k", "2", "--formats", FORMATS, "--engine", "ray", "--actors", "2"]
    assert main(argv) == 0
    printed = capsys.readouterr()
    assert f"labelled {N_GOOD} of {N_GOOD + 1} images" in printed.out
    assert "broken.jpg" in printed.err  # the progress bar's note and the closing warning

    errors = (out / "errors.jsonl").read_text().splitlines()
    assert len(errors) == 1 and json.loads(errors[0])["file_name"] == "broken.jpg"
    files = outputs(out)
    assert files == outputs(local)
    assert {"annotations.coco.json", "yolo/data.yaml", "errors.jsonl"} <= set(files)
    assert sum(name.startswith("masks/") for name in files) == 2 * N_GOOD  # png + sidecar


def test_an_actor_killed_mid_run_gives_the_same_files_without_duplicates(
    ray_cluster, dataset, tmp_path
):
    images, local = dataset
    counter = tmp_path / "calls.txt"
    out = tmp_path / "out"
    # img3 is 52 pixels high (make_folder): the first actor given it ends its process
    recipe = functools.partial(ray_pipelines.counted, str(counter), die_on_height=52)
    summary = ray_run(recipe, images, out)

    assert counter.with_suffix(".died").exists()  # an actor did die, holding img3
    assert summary.images_labelled == N_GOOD
    assert outputs(out) == outputs(local)
    coco = json.loads((out / "annotations.coco.json").read_text())
    ids = [a["id"] for a in coco["annotations"]]
    assert len(ids) == len(set(ids))
    keys = [(a["image_id"], tuple(a["bbox"])) for a in coco["annotations"]]
    assert len(keys) == len(set(keys))  # no annotation of the redone image twice
    assert len(calls(counter)) == N_GOOD  # the dead actor's image was labelled once, after


def test_an_interrupted_ray_run_resumes_without_relabelling_finished_images(
    ray_cluster, dataset, tmp_path
):
    images, local = dataset
    counter = tmp_path / "calls.txt"
    out = tmp_path / "out"
    slow = functools.partial(ray_pipelines.counted, str(counter), delay=1.5)

    def interrupt_after_two() -> None:  # Ctrl-C on the driver once two images are finished
        deadline = time.monotonic() + 240
        while len(finished_records(out)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_after_two, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        ray_run(slow, images, out)
    settled = -1
    while settled != len(calls(counter)):  # the pool is shut down: wait for its last call
        settled = len(calls(counter))
        time.sleep(2.0)
    finished = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in finished_records(out)}
    assert 2 <= len(finished) < N_GOOD

    counter.unlink()
    summary = ray_run(functools.partial(ray_pipelines.counted, str(counter)), images, out)
    assert summary.run_resumed == len(finished)
    assert len(calls(counter)) == N_GOOD - len(finished)  # finished images: not recomputed
    for name, (mtime, data) in finished.items():
        p = out / ".state" / name
        assert (p.stat().st_mtime_ns, p.read_bytes()) == (mtime, data)
    assert outputs(out) == outputs(local)


def test_nothing_but_the_ray_engine_imports_ray():
    code = (
        "import sys, grounded_sam, grounded_sam.autolabel, grounded_sam.cli, "
        "grounded_sam.cli.label\n"
        "from grounded_sam.cli import build_parser; build_parser()\n"
        "assert 'ray' not in sys.modules, sorted(m for m in sys.modules if 'ray' in m)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_without_ray_the_ray_engine_says_how_to_install_it(tmp_path):
    images = make_folder(tmp_path / "images", 1)
    code = (
        "import sys\n"
        "sys.modules['ray'] = None  # as if Ray were not installed: `import ray` fails\n"
        "from grounded_sam.cli import main\n"
        f"sys.exit(main(['label', {str(images)!r}, '-o', {str(tmp_path / 'out')!r}, "
        "'--classes', 'cat', '--tiny-random', '--engine', 'ray']))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 1, run.stderr
    assert 'pip install "grounded-sam[ray]"' in run.stderr
    assert not (tmp_path / "out" / ".state").exists()  # refused before any work
