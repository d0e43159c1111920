"""The checkpoint registry: well-formed entries, the models folder, present/missing files."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

import pytest

from grounded_sam.models import registry
from grounded_sam.models.registry import (
    DEFAULTS,
    ENV_VAR,
    REGISTRY,
    get_entry,
    is_present,
    missing_files,
    model_path,
    models_dir,
    names,
)


@pytest.mark.parametrize("entry", list(REGISTRY.values()), ids=list(REGISTRY))
def test_entries_are_well_formed(entry):
    assert entry.kind in registry.KINDS and entry.files
    paths = [f.path for f in entry.files]
    assert len(set(paths)) == len(paths)
    for f in entry.files:
        assert f.url.startswith("https://")
        p = PurePosixPath(f.path)
        assert not p.is_absolute() and ".." not in p.parts
        assert f.url.rsplit("/", 1)[1] == p.name  # the file keeps its published name
        assert f.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", f.sha256)
        assert f.size is None or f.size > 0
    # model_path is a file of the entry, or the folder that holds all its files
    assert entry.path in paths or all(x.startswith(entry.path + "/") for x in paths)


def test_sam_entries_match_segment_anything_and_published_files():
    from segment_anything import sam_model_registry

    for model_type in ("vit_h", "vit_l", "vit_b"):
        entry = get_entry(f"sam_{model_type}")
        assert entry.builder["model_type"] == model_type and model_type in sam_model_registry
        (f,) = entry.files
        assert f.url.startswith("https://dl.fbaipublicfiles.com/segment_anything/sam_")
        assert f.sha256 is not None and f.size is not None
    assert get_entry("sam_vit_h").files[0].path == "sam_vit_h_4b8939.pth"


def test_sam2_entries_are_the_official_sam2_1_files_and_build_configs():
    from grounded_sam.segmenters.sam2_loading import SAM2_CONFIGS

    sam2 = [n for n in names("sam") if n.startswith("sam2")]
    assert sam2 == list(SAM2_CONFIGS)  # tiny, small, base_plus, large
    for name in sam2:
        entry = get_entry(name)
        assert entry.builder == {"model_type": name, "family": "sam2"}
        (f,) = entry.files
        assert f.url == f"https://dl.fbaipublicfiles.com/segment_anything_2/092824/{name}.pt"
        assert entry.path == f.path == f"{name}.pt"
    assert get_entry("sam2.1-hiera-base-plus").name == "sam2.1_hiera_base_plus"


def test_grounding_dino_entries_hold_what_from_pretrained_reads():
    for name in names("grounding_dino"):
        entry = get_entry(name)
        if entry.builder.get("format") == "original":
            continue  # a .pth of the original code: see the next test
        files = {PurePosixPath(f.path).name for f in entry.files}
        assert {"config.json", "model.safetensors", "preprocessor_config.json"} <= files
        assert {"tokenizer.json", "tokenizer_config.json", "vocab.txt"} <= files
        repo = entry.builder["repo_id"]
        assert all(f.url.startswith(f"https://huggingface.co/{repo}/resolve/") for f in entry.files)
        # pinned to one revision (a 40-hex commit), so the hashes stay true
        revisions = {f.url.split("/resolve/")[1].split("/")[0] for f in entry.files}
        assert len(revisions) == 1 and re.fullmatch(r"[0-9a-f]{40}", revisions.pop())


def test_original_grounding_dino_entries_are_the_release_files_with_a_tokenizer():
    originals = [n for n in names("grounding_dino") if get_entry(n).builder.get("format")]
    assert sorted(originals) == ["groundingdino_swinb_cogcoor", "groundingdino_swint_ogc"]
    tokenizer = get_entry(get_entry(originals[0]).builder["tokenizer"])
    assert tokenizer.kind == "tokenizer" and tokenizer.path == "bert-base-uncased-tokenizer"
    assert {"vocab.txt", "tokenizer.json"} <= {PurePosixPath(f.path).name for f in tokenizer.files}
    for name in originals:
        entry = get_entry(name)
        weights, *rest = entry.files
        assert weights.path == entry.path == f"{name}.pth"
        assert weights.url.startswith(
            "https://github.com/IDEA-Research/GroundingDINO/releases/download/v0.1.0-alpha"
        )
        assert weights.sha256 is not None and weights.size > 600_000_000
        assert tuple(rest) == tokenizer.files  # one download brings what loading needs


def test_clip_entry_matches_open_clip_pretrained_config():
    import open_clip

    entry = get_entry(DEFAULTS["clip"])
    model, tag = entry.builder["model_name"], entry.builder["pretrained_tag"]
    assert model in open_clip.list_models()
    assert tag in open_clip.list_pretrained_tags_by_model(model)
    hub = open_clip.get_pretrained_cfg(model, tag)["hf_hub"].strip("/")
    assert entry.files[0].url.startswith(f"https://huggingface.co/{hub}/resolve/")
    assert entry.path.endswith("open_clip_model.safetensors")


def test_lookup_names_and_defaults():
    assert get_entry("SAM-VIT-B") is REGISTRY["sam_vit_b"]
    assert get_entry(REGISTRY["sam_vit_b"]) is REGISTRY["sam_vit_b"]
    with pytest.raises(KeyError, match="known models: sam_vit_h"):
        get_entry("sam_vit_x")
    assert set(names("sam")) == {"sam_vit_h", "sam_vit_l", "sam_vit_b"} | {
        f"sam2.1_hiera_{size}" for size in ("tiny", "small", "base_plus", "large")
    }
    assert sorted(names()) == sorted(REGISTRY)
    assert all(REGISTRY[n].kind == kind for kind, n in DEFAULTS.items())
    with pytest.raises(ValueError):
        names("detector")


def test_models_dir_env_var_and_cwd(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.chdir(tmp_path)
    assert models_dir() == tmp_path / "models"
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "elsewhere"))
    assert models_dir() == tmp_path / "elsewhere"
    assert model_path("sam_vit_b") == tmp_path / "elsewhere" / "sam_vit_b_01ec64.pth"
    monkeypatch.setenv(ENV_VAR, "relative/dir")
    assert models_dir() == tmp_path / "relative/dir"  # made absolute against the cwd
    assert models_dir(tmp_path / "given") == tmp_path / "given"  # an argument wins


def test_missing_files_and_is_present(tmp_path):
    entry = get_entry("grounding_dino_tiny")
    assert model_path(entry, tmp_path) == tmp_path / "grounding-dino-tiny"
    assert missing_files(entry, tmp_path) == [tmp_path / f.path for f in entry.files]
    assert not is_present(entry, tmp_path)

    # small files written with their registry size count as present; the weights do not
    folder = tmp_path / "grounding-dino-tiny"
    folder.mkdir()
    for f in entry.files:
        if f.path.endswith(".json") or f.path.endswith(".txt"):
            (tmp_path / f.path).write_bytes(b"x" * f.size)
    (folder / "model.safetensors").write_bytes(b"truncated")  # wrong size: still missing
    assert missing_files(entry, tmp_path) == [folder / "model.safetensors"]

    small = registry.ModelEntry(
        name="toy",
        kind="clip",
        files=(registry.ModelFile("https://example.invalid/w.bin", "toy/w.bin", None, None),),
        path="toy/w.bin",
    )
    assert missing_files(small, tmp_path) == [tmp_path / "toy/w.bin"]
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy/w.bin").write_bytes(b"any size is fine when unknown")
    assert is_present(small, tmp_path) and small.size is None
    assert Path(model_path(small, tmp_path)).is_file()


def test_a_grounding_dino_on_disk_is_an_entry_with_nothing_to_fetch(tmp_path):
    folder = tmp_path / "converted"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    checkpoint = tmp_path / "groundingdino_swint_ogc.pth"
    checkpoint.write_bytes(b"")
    for path, fmt in ((folder, None), (checkpoint, "original")):
        entry = get_entry(str(path))
        assert entry.kind == "grounding_dino" and entry.files == ()
        assert entry.builder.get("format") == fmt
        assert registry.model_path(entry, tmp_path / "elsewhere") == path
        assert registry.missing_files(entry) == []
    with pytest.raises(KeyError, match="unknown model"):
        get_entry(str(tmp_path / "nothing.pth"))
    assert registry.local_entry(tmp_path) is None  # a folder without config.json
