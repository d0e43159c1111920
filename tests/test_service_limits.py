"""Request limits: defaults, environment overrides, and refusals that name the limit."""

from __future__ import annotations

import pytest

from grounded_sam.service.limits import DEFAULT_LIMITS, LimitExceeded, Limits, check_at_most


def test_defaults_and_environment():
    assert Limits.from_env({}) == DEFAULT_LIMITS
    limits = Limits.from_env(
        {"GROUNDED_SAM_WEB_MAX_PIXELS": "1000", "GROUNDED_SAM_WEB_MAX_UPLOAD_MB": " 3 "}
    )
    assert limits.max_pixels == 1000 and limits.max_upload_bytes == 3_000_000
    assert "max_pixels=1000" in limits.summary()


@pytest.mark.parametrize(
    "environ, message",
    [
        ({"GROUNDED_SAM_WEB_MAX_PIXELS": "many"}, "GROUNDED_SAM_WEB_MAX_PIXELS='many' is not an"),
        ({"GROUNDED_SAM_WEB_CONCURRENCY": "0"}, "concurrency must be an integer >= 1, got 0"),
        ({"GROUNDED_SAM_WEB_MAX_CROP_LAYERS": "-1"}, "max_crop_layers must be an integer >= 0"),
    ],
)
def test_bad_settings_are_refused_at_start(environ, message):
    with pytest.raises(ValueError, match=message):
        Limits.from_env(environ)


def test_check_at_most_names_value_limit_and_variable():
    check_at_most("points_per_side", 32, 32, "max_points_per_side")
    with pytest.raises(LimitExceeded) as info:
        check_at_most("points_per_side", 33, 32, "max_points_per_side")
    assert str(info.value) == (
        "points_per_side is 33, more than this server's limit of 32; ask for less "
        "(the operator can raise it with GROUNDED_SAM_WEB_MAX_POINTS_PER_SIDE)"
    )
