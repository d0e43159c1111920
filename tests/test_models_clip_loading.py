"""open_clip weights from the disk only: where each kind of ``pretrained`` is looked for, what
the errors say, and a tiny random open_clip model built from a local file."""

from __future__ import annotations

import pytest
import torch

from grounded_sam.errors import MissingCheckpointError
from grounded_sam.models import registry
from grounded_sam.models.clip_loading import LoadedClip, find_clip_checkpoint, load_clip

torch.set_num_threads(2)

LAION_HUB = "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"


def test_a_file_keeps_its_tags_config_only_where_the_registry_puts_it(tmp_path):
    placed = tmp_path / "m" / "clip-vit-b-32-laion2b" / "open_clip_model.safetensors"
    placed.parent.mkdir(parents=True)
    placed.write_bytes(b"")
    path, cfg = find_clip_checkpoint("ViT-B-32", placed, None, None)
    assert path == placed and cfg["hf_hub"].startswith(LAION_HUB)
    other = tmp_path / "tiny.pt"
    other.write_bytes(b"")
    assert find_clip_checkpoint("ViT-B-32", other) == (other, {})
    assert find_clip_checkpoint("ViT-B-32", str(other)) == (other, {})


def test_a_tag_is_found_in_the_models_folder_then_the_caches(tmp_path):
    models, cache = tmp_path / "models", tmp_path / "cache"
    with pytest.raises(MissingCheckpointError, match="grounded-sam download clip_vit_b32") as e:
        find_clip_checkpoint("ViT-B-32", "laion2b_s34b_b79k", models, cache)
    assert e.value.path == models / "clip-vit-b-32-laion2b/open_clip_model.safetensors"

    # Hugging Face's cache layout: refs/main names the snapshot that holds the file
    repo = cache / ("models--" + LAION_HUB.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    hub_file = repo / "snapshots" / "abc123" / "open_clip_model.safetensors"
    hub_file.parent.mkdir(parents=True)
    hub_file.write_bytes(b"")
    path, cfg = find_clip_checkpoint("ViT-B-32", "laion2b_s34b_b79k", models, cache)
    assert path == hub_file and cfg["hf_hub"].startswith(LAION_HUB)

    # `grounded-sam download`'s place wins over the caches once the file has its full size
    placed = models / "clip-vit-b-32-laion2b" / "open_clip_model.safetensors"
    placed.parent.mkdir(parents=True)
    placed.write_bytes(b"")  # truncated: not taken
    assert find_clip_checkpoint("ViT-B-32", "laion2b_s34b_b79k", models, cache)[0] == hub_file
    with placed.open("r+b") as f:  # sparse: the registry's size without writing it
        f.truncate(registry.get_entry("clip_vit_b32").files[0].size)
    assert find_clip_checkpoint("ViT-B-32", "laion2b_s34b_b79k", models, cache)[0] == placed

    # open_clip's URL cache: a file named as the tag's URL ends
    with pytest.raises(MissingCheckpointError, match="ViT-B-32/openai are not on this machine"):
        find_clip_checkpoint("ViT-B-32", "openai", models, cache)
    (cache / "ViT-B-32.pt").write_bytes(b"")
    path, cfg = find_clip_checkpoint("ViT-B-32", "openai", models, cache)
    assert path == cache / "ViT-B-32.pt" and cfg["quick_gelu"] is True


def test_errors_name_the_file_or_the_known_tags(tmp_path):
    with pytest.raises(MissingCheckpointError, match="nope.pt"):
        find_clip_checkpoint("ViT-B-32", tmp_path / "nope.pt")
    with pytest.raises(MissingCheckpointError, match="nope.pt"):
        find_clip_checkpoint("ViT-B-32", "weights/nope.pt")
    with pytest.raises(ValueError, match="known tags: .*laion2b_s34b_b79k"):
        find_clip_checkpoint("ViT-B-32", "no-such-tag")


def test_load_clip_builds_the_model_from_a_local_file(tmp_path):
    from grounded_sam.testing.clip import TINY_CLIP_NAME, tiny_clip

    model, _, _ = tiny_clip(seed=3)
    path = tmp_path / "tiny.pt"
    torch.save(model.state_dict(), path)
    loaded = load_clip(TINY_CLIP_NAME, path)
    assert isinstance(loaded, LoadedClip)
    assert loaded.model_id == f"{TINY_CLIP_NAME}/tiny.pt"
    assert not loaded.model.training
    theirs = model.state_dict()
    assert all(torch.equal(v, theirs[k]) for k, v in loaded.model.state_dict().items())
    tokens = torch.as_tensor(loaded.tokenizer(["a photo of a cat."]))
    assert tokens.shape == (1, 16) and tokens.dtype == torch.int64
    with torch.inference_mode():
        text = loaded.model.encode_text(tokens)
    assert text.shape == (1, 32)
