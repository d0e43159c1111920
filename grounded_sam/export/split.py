"""A reproducible train/val split of a dataset's images."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def train_val_split(names: Sequence[str], val_fraction: float, *, seed: int = 0) -> dict[str, str]:
    """``{name: "train" | "val"}``: ``round(val_fraction * len(names))`` names go to val.

    The choice depends only on the set of ``names`` (sorted first), ``val_fraction`` and
    ``seed`` (a NumPy ``default_rng(seed)`` permutation), so every shard of a run and every
    resumed run agree. With ``val_fraction > 0`` and at least two names, at least one goes to
    val and at least one stays in train.

    Raises:
        ValueError: ``val_fraction`` outside ``[0, 1)``.
    """
    if not 0.0 <= float(val_fraction) < 1.0:
        raise ValueError(
            f"val_fraction must be in [0, 1), e.g. 0.2 for a fifth of the images, got "
            f"{val_fraction}"
        )
    ordered = sorted(set(names))
    n = len(ordered)
    n_val = round(float(val_fraction) * n)
    if val_fraction > 0 and n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    val = {ordered[i] for i in order[:n_val]}
    return {name: "val" if name in val else "train" for name in ordered}
