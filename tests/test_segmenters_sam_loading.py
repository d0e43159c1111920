"""sam_loading.build_sam: strict loading of a tiny SAM checkpoint, errors before building."""

from __future__ import annotations

import pytest
import torch

from grounded_sam.errors import CheckpointError, MissingCheckpointError
from grounded_sam.segmenters.sam_loading import SAM_MODEL_TYPES, build_sam
from grounded_sam.testing.sam import build_tiny_sam, tiny_sam, tiny_sam_checkpoint

torch.set_num_threads(2)


def test_builds_and_loads_the_weights_in_eval_mode(tmp_path):
    path = tiny_sam_checkpoint(tmp_path / "tiny.pth", seed=5)
    sam = build_sam("tiny", path, builder=build_tiny_sam)
    want = tiny_sam(seed=5).state_dict()
    got = sam.state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    assert not sam.training and sam.device == torch.device("cpu")


def test_errors_come_before_building(tmp_path):
    built: list[int] = []

    def builder():
        built.append(1)
        return build_tiny_sam()

    missing = tmp_path / "nope.pth"
    with pytest.raises(MissingCheckpointError, match="grounded-sam download sam_tiny") as info:
        build_sam("tiny", missing, builder=builder)
    assert info.value.path == missing and built == []
    with pytest.raises(MissingCheckpointError, match="grounded-sam download mine"):
        build_sam("tiny", missing, builder=builder, name="mine")
    with pytest.raises(ValueError, match=r"unknown SAM model_type 'vit_x'.*builder=") as info:
        build_sam("vit_x", missing)
    assert all(t in str(info.value) for t in SAM_MODEL_TYPES)

    wrong = tmp_path / "wrong.pth"
    torch.save({"model": {"extra": torch.zeros(1)}}, wrong)
    with pytest.raises(CheckpointError, match="unexpected keys \\(1: extra\\)"):
        build_sam("tiny", wrong, builder=builder, name="mine")
    assert built == [1]
