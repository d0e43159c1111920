"""The label step: detector phrases -> the user's classes, plus accept / needs-review triage.

A detector's phrase is text, not a class: Grounding DINO may return ``"traffic"`` for the
class ``"traffic light"``, ``"black cats"`` for ``"cat"``, or an ambiguous ``"cat dog"``.
:func:`label` maps every phrase onto the class list the user wants in the dataset and flags
the detections a person should look at — the SAM paper's semi-automatic stage, where
annotators only review what the model was unsure of.

Matching (both sides normalised: lower case, punctuation and ``_`` as spaces, whitespace
collapsed, each word's simple English plural removed: ``boxes`` -> ``box``,
``berries`` -> ``berry``, ``cats`` -> ``cat``; ``glass``, ``bus`` stay), in this order:

1. the phrase equals a class name or one of its synonyms;
2. the phrase contains a class name or synonym as whole words (``"black cat"`` -> ``cat``);
   the longest such name wins; a tie between different classes (``"cat dog"``) is no match;
3. the phrase is part of exactly one class name or synonym (``"traffic"`` ->
   ``traffic light``), as Grounding DINO returns when only some words of a class pass its
   text threshold.

No match gives ``class_id = -1`` and ``class_name = ""``. A class listed twice maps to its
first position.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

from grounded_sam.detectors.phrases import normalize_classes
from grounded_sam.types import Detections

DEFAULT_BOX_THRESHOLD_ACCEPT = 0.5
DEFAULT_MASK_THRESHOLD_ACCEPT = 0.8

_NON_WORD = re.compile(r"[^\w\s]|_")


def singular(word: str) -> str:
    """A simple English singular: ``berries`` -> ``berry``, ``boxes`` -> ``box``,
    ``buses`` -> ``bus``, ``cats`` -> ``cat``; words ending in ``ss``/``us``/``is`` and words
    of at most three letters stay. Not a lemmatizer: use synonyms for irregular plurals."""
    if len(word) <= 3:
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "shes", "ches", "xes", "zes", "uses")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def match_key(text: str) -> tuple[str, ...]:
    """The words a phrase or class name is matched by (see the module docstring)."""
    words = _NON_WORD.sub(" ", str(text).lower()).split()
    return tuple(singular(w) for w in words)


def _contains(outer: tuple[str, ...], inner: tuple[str, ...]) -> bool:
    n = len(inner)
    return 0 < n <= len(outer) and any(outer[i : i + n] == inner for i in range(len(outer) - n + 1))


class ClassMatcher:
    """Maps phrases to positions in a class list (with optional synonyms).

    Args:
        classes: ``"cat . dog"`` or ``["cat", "dog"]`` (normalised with
            :func:`grounded_sam.detectors.phrases.normalize_classes`).
        synonyms: ``{class name: [alias, ...]}``; e.g. ``{"person": ["man", "woman",
            "people"]}``. Keys must name classes of the list.

    Raises:
        ValueError: a synonym key is not a class, or one alias names two classes.
    """

    def __init__(
        self,
        classes: str | Sequence[str],
        synonyms: Mapping[str, str | Sequence[str]] | None = None,
    ):
        self.classes = normalize_classes(classes)
        first: dict[tuple[str, ...], int] = {}
        for i, name in enumerate(self.classes):
            first.setdefault(match_key(name), i)
        names: dict[tuple[str, ...], int] = dict(first)
        for cls_name, aliases in (synonyms or {}).items():
            key = match_key(cls_name)
            if key not in first:
                raise ValueError(
                    f"synonyms key {cls_name!r} is not one of the classes {self.classes}"
                )
            if isinstance(aliases, str):
                aliases = [aliases]
            for alias in aliases:
                akey = match_key(alias)
                if not akey:
                    raise ValueError(f"synonym {alias!r} of {cls_name!r} is empty")
                if names.get(akey, first[key]) != first[key]:
                    other = self.classes[names[akey]]
                    raise ValueError(
                        f"synonym {alias!r} of {cls_name!r} also names the class {other!r}; "
                        f"an alias must point at one class"
                    )
                names[akey] = first[key]
        self._names = names  # match key -> class id

    def __call__(self, phrase: str) -> int:
        """The class id of ``phrase``, -1 when it matches no class (or is ambiguous)."""
        key = match_key(phrase)
        if not key:
            return -1
        if key in self._names:
            return self._names[key]
        inside = [(len(k), c) for k, c in self._names.items() if _contains(key, k)]
        if inside:
            longest = max(n for n, _ in inside)
            ids = {c for n, c in inside if n == longest}
            return ids.pop() if len(ids) == 1 else -1
        around = {c for k, c in self._names.items() if _contains(k, key)}
        return around.pop() if len(around) == 1 else -1


def label(
    detections: Detections,
    classes: str | Sequence[str],
    *,
    synonyms: Mapping[str, str | Sequence[str]] | None = None,
    box_threshold_accept: float = DEFAULT_BOX_THRESHOLD_ACCEPT,
    mask_threshold_accept: float = DEFAULT_MASK_THRESHOLD_ACCEPT,
) -> Detections:
    """Map each detection's phrase to ``classes`` and triage it as accepted or needs-review.

    Args:
        detections: N detections; ``phrases`` are matched, ``scores`` and (when present)
            ``mask_scores`` are triaged.
        classes: the dataset's classes, ``"cat . dog"`` or ``["cat", "dog"]``.
        synonyms: ``{class: [alias, ...]}`` extra names that map to a class.
        box_threshold_accept: detector scores below this need review.
        mask_threshold_accept: SAM mask scores (predicted IoU) below this need review;
            ignored when the detections have no ``mask_scores``.

    Returns:
        The same detections with ``class_id`` int64 (N,) set (-1 = no class) and
        ``data["class_name"]`` (list[str], the normalised class name, ``""`` for none),
        ``data["needs_review"]`` (bool (N,): low score, low mask score or no class) and
        ``data["review_reason"]`` (list[str], e.g. ``"low score; no class"``, ``""`` when
        accepted).
    """
    for name, value in (
        ("box_threshold_accept", box_threshold_accept),
        ("mask_threshold_accept", mask_threshold_accept),
    ):
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value}")
    matcher = ClassMatcher(classes, synonyms)
    class_id = np.array([matcher(p) for p in detections.phrases], dtype=np.int64)
    no_class = class_id < 0
    low_score = detections.scores < box_threshold_accept
    low_mask = (
        np.zeros(len(detections), bool)
        if detections.mask_scores is None
        else detections.mask_scores < mask_threshold_accept
    )
    reasons = []
    for i in range(len(detections)):
        parts = [
            text
            for flag, text in (
                (low_score[i], "low score"),
                (low_mask[i], "low mask score"),
                (no_class[i], "no class"),
            )
            if flag
        ]
        reasons.append("; ".join(parts))
    data = dict(detections.data)
    data["class_name"] = [matcher.classes[c] if c >= 0 else "" for c in class_id]
    data["needs_review"] = low_score | low_mask | no_class
    data["review_reason"] = reasons
    return detections.replace(class_id=class_id, data=data)
