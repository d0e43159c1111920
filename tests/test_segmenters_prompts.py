"""Prompt preparation: the box rule of SamSegmenter.segment and the move to SAM's frame."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from grounded_sam.segmenters.prompts import (
    click_prompts,
    prepare_prompts,
    prompt_boxes,
    to_model_frame,
)

H, W = 100, 200


@pytest.mark.parametrize(
    ("box", "expected"),
    [
        ([10, 20, 30, 40], [10, 20, 30, 40]),  # inside: unchanged
        ([0.25, 0.5, 199.75, 99.5], [0.25, 0.5, 199.75, 99.5]),  # fractional: unchanged
        ([0, 0, W, H], [0, 0, W, H]),  # the whole image
        ([-10, -5, 50, 60], [0, 0, 50, 60]),  # partly outside: clipped
        ([150, 80, 400, 300], [150, 80, W, H]),
        ([10, 10, 10, 50], [9.5, 10, 10.5, 50]),  # zero width: 1 px around the centre
        ([10, 10, 10.5, 10.25], [9.75, 9.625, 10.75, 10.625]),  # thin both ways
        ([5, 5, 5, 5], [4.5, 4.5, 5.5, 5.5]),  # a point
        ([0, 0, 0, 0], [0, 0, 1, 1]),  # a point on the corner: kept inside
        ([W, 0, W, H], [W - 1, 0, W, H]),  # on the right border
        ([W + 10, H + 10, W + 50, H + 60], [W - 1, H - 1, W, H]),  # outside, bottom right
        ([-50, -40, -10, -5], [0, 0, 1, 1]),  # outside, top left
    ],
)
def test_prompt_boxes(box, expected):
    out = prompt_boxes(np.array([box], np.float32), (H, W))
    assert out.dtype == np.float32 and out.shape == (1, 4)
    np.testing.assert_array_equal(out[0], np.array(expected, np.float32))


def test_prompt_boxes_does_not_modify_its_input_and_handles_empty():
    boxes = np.array([[-5, -5, 300, 300]], np.float32)
    prompt_boxes(boxes, (H, W))
    assert boxes.tolist() == [[-5, -5, 300, 300]]
    assert prompt_boxes(np.zeros((0, 4)), (H, W)).shape == (0, 4)
    # a 1x1 image still gets a valid box
    np.testing.assert_array_equal(prompt_boxes([[3, 3, 9, 9]], (1, 1)), [[0, 0, 1, 1]])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_to_model_frame_scales_x_and_y_and_keeps_precision(dtype):
    coords = torch.tensor([[[100.0, 50.0], [0.0, 731.0]]], dtype=dtype)
    out = to_model_frame(coords, original_size=(731, 211), input_size=(1024, 296))
    assert out.dtype == dtype
    assert torch.equal(out[..., 0], coords[..., 0] * (296 / 211))
    assert torch.equal(out[..., 1], coords[..., 1] * (1024 / 731))
    assert coords[0, 0, 0] == 100.0  # input untouched


def _prepare(**kw):
    args = dict(points=None, point_labels=None, boxes=None, mask_input=None)
    args.update(kw)
    return prepare_prompts(
        **args,
        original_size=(H, W),
        input_size=(512, 1024),
        mask_input_size=(256, 256),
        device=torch.device("cpu"),
    )


def test_prepare_prompts_dtypes_and_chunks():
    batch = _prepare(
        points=np.zeros((5, 2, 2)),  # float64 stays float64
        point_labels=np.ones((5, 2), np.int64),
        boxes=np.tile(np.array([[0, 0, 100, 50]], np.float32), (5, 1)),
        mask_input=np.zeros((5, 1, 256, 256)),
    )
    assert batch.size == 5
    assert batch.coords.dtype == torch.float64 and batch.labels.dtype == torch.int32
    assert batch.boxes.dtype == torch.float32 and batch.masks.dtype == torch.float32
    assert batch.boxes[0].tolist() == [0, 0, 512, 256]
    part = batch.chunk(4, 8)
    assert part.size == 1 and part.coords.shape == (1, 2, 2) and part.masks.shape[0] == 1
    assert _prepare(points=[[[1, 2]]], point_labels=[[1]]).coords.dtype == torch.float32


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (dict(points=np.zeros((1, 1, 2))), "together"),
        (dict(points=np.zeros((1, 2)), point_labels=np.ones(1)), r"points must be \(B, K, 2\)"),
        (dict(points=np.zeros((2, 3, 2)), point_labels=np.ones((2, 2))), r"point_labels must be"),
        (dict(boxes=np.zeros((2, 5))), r"boxes must be \(B, 4\)"),
        (dict(mask_input=np.zeros((1, 1, 64, 64))), r"mask_input must be \(B, 1, 256, 256\)"),
        (dict(boxes=np.zeros((2, 4)), mask_input=np.zeros((3, 1, 256, 256))), "disagree"),
        ({}, "a prompt is needed"),
    ],
)
def test_prepare_prompts_errors(kw, message):
    with pytest.raises(ValueError, match=message):
        _prepare(**kw)


def test_click_prompts_multimask_only_for_a_single_click():
    kw, multi = click_prompts(
        [[1, 2]], [1], None, None, image_size=(H, W), mask_input_size=(256, 256)
    )
    assert multi and kw["points"].shape == (1, 1, 2) and kw["point_labels"].shape == (1, 1)
    _, multi = click_prompts(
        [[1, 2], [3, 4]], [1, 0], None, None, image_size=(H, W), mask_input_size=(256, 256)
    )
    assert not multi
    kw, multi = click_prompts(
        [[1, 2]], [1], [-5, 0, 50, 50], None, image_size=(H, W), mask_input_size=(256, 256)
    )
    assert not multi and kw["boxes"].tolist() == [[0, 0, 50, 50]]
    kw, multi = click_prompts(
        [[1, 2]], [1], None, np.zeros((256, 256)), image_size=(H, W), mask_input_size=(256, 256)
    )
    assert not multi and kw["mask_input"].shape == (1, 1, 256, 256)
    with pytest.raises(ValueError, match="low-res logits"):
        click_prompts(
            [[1, 2]], [1], None, np.zeros((64, 64)), image_size=(H, W), mask_input_size=(256, 256)
        )
    with pytest.raises(ValueError, match=r"points_xy must be \(K, 2\)"):
        click_prompts([[1, 2]], [1, 1], None, None, image_size=(H, W), mask_input_size=(256, 256))
