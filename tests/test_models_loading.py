"""Strict checkpoint loading: wrappers, safe unpickling and errors that name the keys."""

from __future__ import annotations

import pickle
import re

import pytest
import torch
from torch import nn

from grounded_sam.errors import CheckpointError, MissingCheckpointError
from grounded_sam.models.loading import load_state_dict_strict, read_state_dict


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


def _equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("wrap", [None, "model", "state_dict"])
def test_loads_raw_and_wrapped_state_dicts(tmp_path, wrap):
    src, dst = _net(0), _net(1)
    assert not _equal(src, dst)
    sd = src.state_dict()
    path = tmp_path / "w.pth"
    torch.save(sd if wrap is None else {wrap: sd, "epoch": 3}, path)

    out = load_state_dict_strict(dst, str(path))

    assert out is dst
    assert _equal(src, dst)


def test_missing_file_names_file_and_download_command(tmp_path):
    path = tmp_path / "nope" / "sam_vit_b_01ec64.pth"
    with pytest.raises(MissingCheckpointError) as info:
        load_state_dict_strict(_net(), path, name="sam_vit_b")
    msg = str(info.value)
    assert str(path) in msg
    assert "grounded-sam download sam_vit_b" in msg
    assert isinstance(info.value, FileNotFoundError)
    assert info.value.path == path


def test_missing_file_without_name_still_names_file(tmp_path):
    path = tmp_path / "w.pth"
    with pytest.raises(MissingCheckpointError, match=re.escape(str(path))):
        load_state_dict_strict(_net(), path)


def test_missing_and_unexpected_keys_are_listed(tmp_path):
    net = _net()
    sd = net.state_dict()
    del sd["2.bias"]
    sd["extra.weight"] = torch.zeros(1)
    path = tmp_path / "w.pth"
    torch.save(sd, path)
    before = {k: v.clone() for k, v in net.state_dict().items()}

    with pytest.raises(CheckpointError) as info:
        load_state_dict_strict(net, path)
    msg = str(info.value)
    assert "missing keys (1: 2.bias)" in msg
    assert "unexpected keys (1: extra.weight)" in msg
    assert str(path) in msg
    # nothing was loaded
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_shape_mismatch_is_listed_with_both_shapes(tmp_path):
    sd = _net().state_dict()
    sd["0.weight"] = torch.zeros(5, 3)
    path = tmp_path / "w.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match=re.escape("0.weight (5, 3) != (4, 3)")):
        load_state_dict_strict(_net(), path)


def test_long_key_lists_are_cut_at_ten_with_a_count(tmp_path):
    sd = _net().state_dict()
    for i in range(25):
        sd[f"junk.{i:02d}"] = torch.zeros(1)
    path = tmp_path / "w.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError) as info:
        load_state_dict_strict(_net(), path)
    msg = str(info.value)
    assert "unexpected keys (25: junk.00" in msg
    assert "junk.09" in msg and "junk.10" not in msg
    assert "and 15 more" in msg


class _Payload:
    """Anything that is not a tensor: weights_only=True must refuse to unpickle it."""


def test_unsafe_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": _Payload()}, path)
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        read_state_dict(path, name="sam_vit_b")


def test_garbage_file_and_directory_and_non_state_dict(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="grounded-sam download sam_vit_h"):
        read_state_dict(junk, name="sam_vit_h")

    with pytest.raises(CheckpointError, match="is a directory"):
        read_state_dict(tmp_path)

    listed = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], listed)
    with pytest.raises(CheckpointError, match="holds no state dict"):
        read_state_dict(listed)

    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps({"a": 1}, protocol=2))
    with pytest.raises(CheckpointError):
        read_state_dict(raw)
