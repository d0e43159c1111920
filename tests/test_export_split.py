"""train_val_split: reproducible, independent of the order names come in, never all val."""

from __future__ import annotations

import pytest

from grounded_sam.export.split import train_val_split


@pytest.mark.parametrize(
    ("n", "fraction", "n_val"),
    [(10, 0.2, 2), (10, 0.0, 0), (1, 0.5, 0), (2, 0.1, 1), (3, 0.9, 2), (100, 0.25, 25)],
)
def test_sizes(n, fraction, n_val):
    split = train_val_split([f"img{i}.jpg" for i in range(n)], fraction)
    assert len(split) == n
    assert sum(v == "val" for v in split.values()) == n_val


def test_the_same_seed_gives_the_same_split_in_any_order():
    names = [f"img{i}.jpg" for i in range(20)]
    a = train_val_split(names, 0.3, seed=7)
    assert a == train_val_split(list(reversed(names)), 0.3, seed=7)
    assert a != train_val_split(names, 0.3, seed=8)


def test_a_bad_fraction_says_what_is_allowed():
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        train_val_split(["a.jpg"], 1.0)
