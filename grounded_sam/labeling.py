"""The label step: detections -> the user's classes, plus accept / needs-review triage.

A detector's ``class_id`` is its class; its phrase is text, not a class (Grounding DINO may
return ``"traffic"`` for the class ``"traffic light"``, ``"black cats"`` for ``"cat"``, or an
ambiguous ``"cat dog"``). :func:`label` therefore keeps the detector's ``class_id`` when the
label classes are the prompt's classes, maps the detector's class *name* onto the label
classes when they are another list (or when synonyms widen a class), and matches the phrase
text only where no class is known: detections of an unknown prompt, or ones the detector gave
class -1. It also flags the detections a person should look at — the SAM paper's
semi-automatic stage, where annotators only review what the model was unsure of.

Class lists are normalised by :func:`grounded_sam.classes.parse_classes` (lower case, each
name once). Name and phrase matching (both sides normalised: lower case, punctuation and ``_`` as spaces, whitespace
collapsed, each word's simple English plural removed: ``boxes`` -> ``box``,
``berries`` -> ``berry``, ``cats`` -> ``cat``; ``glass``, ``bus`` stay), in this order:

1. the phrase equals a class name or one of its synonyms;
2. the phrase contains a class name or synonym as whole words (``"black cat"`` -> ``cat``);
   the longest such name wins; a tie between different classes (``"cat dog"``) is no match;
3. the phrase is part of exactly one class name or synonym (``"traffic"`` ->
   ``traffic light``), as Grounding DINO returns when only some words of a class pass its
   text threshold.

No match gives ``class_id = -1`` and ``class_name = ""``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

from grounded_sam.classes import parse_classes
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
            :func:`grounded_sam.classes.parse_classes`).
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
        self.classes = parse_classes(classes)
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


def class_ids(
    detections: Detections,
    matcher: ClassMatcher,
    prompt_classes: str | Sequence[str] | None = None,
) -> np.ndarray:
    """int64 (N,): each detection's position in ``matcher.classes``, -1 for none.

    With ``prompt_classes`` (the list ``detections.class_id`` indexes) a detection's class
    is the detector's: kept as is when the two lists are equal, else its name is matched
    (name, synonyms, words; see the module docstring). A detection of class -1, or every
    detection when ``prompt_classes`` is ``None``, is matched by its phrase.

    Raises:
        ValueError: a ``class_id`` does not index ``prompt_classes``.
    """
    by_phrase = np.array([matcher(p) for p in detections.phrases], dtype=np.int64)
    if prompt_classes is None:
        return by_phrase
    prompt = parse_classes(prompt_classes)
    if len(detections) and detections.class_id.max() >= len(prompt):
        raise ValueError(
            f"class_id {int(detections.class_id.max())} is out of range for the prompt's "
            f"{len(prompt)} classes {prompt}; pass the prompt the detections were made with"
        )
    if prompt == matcher.classes:
        by_name = detections.class_id
    else:  # another list: map each prompt class once; index -1 reads the trailing -1
        by_name = np.array([matcher(name) for name in prompt] + [-1], np.int64)[detections.class_id]
    return np.where(detections.class_id >= 0, by_name, by_phrase)


def label(
    detections: Detections,
    classes: str | Sequence[str],
    *,
    prompt_classes: str | Sequence[str] | None = None,
    synonyms: Mapping[str, str | Sequence[str]] | None = None,
    box_threshold_accept: float = DEFAULT_BOX_THRESHOLD_ACCEPT,
    mask_threshold_accept: float = DEFAULT_MASK_THRESHOLD_ACCEPT,
) -> Detections:
    """Give each detection its place in ``classes`` and triage it as accepted or needs-review.

    Args:
        detections: N detections; ``class_id`` (with ``prompt_classes``) or ``phrases`` give
            the class, ``scores`` and (when present) ``mask_scores`` are triaged.
        classes: the dataset's classes, ``"cat . dog"`` or ``["cat", "dog"]``.
        prompt_classes: the prompt the detections were made with (``"cat . dog"`` or a
            list), whose classes ``detections.class_id`` indexes. Given, the detector's
            classes are kept (equal lists) or mapped by name (see :func:`class_ids`);
            ``None``: every class comes from matching the phrase text.
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
    class_id = class_ids(detections, matcher, prompt_classes)
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
