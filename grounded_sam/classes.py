"""Class lists: the one rule that turns a prompt into the classes every step indexes.

A prompt is ``"cat . traffic light"`` (Grounding DINO's ``"."`` separator) or a list of
names. :func:`parse_classes` is used by every step (detectors, the label step, the pipeline,
auto-labelling, the CLI and the web service), so a ``class_id`` means the same class
everywhere: it indexes the list this function returns.

The rule: each name is trimmed, inner whitespace collapsed and lower-cased (Grounding DINO's
tokenizer is uncased, so ``"Cat"`` and ``"cat"`` are one class to it); a repeated name is
kept once, at its first position; order is otherwise kept. ``"Cat . dog . cat"`` ->
``["cat", "dog"]``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from grounded_sam.errors import PromptError

# Characters Grounding DINO treats as class delimiters (token ids 1012 and 1029).
DELIMITERS = (".", "?")


def _clean(name: str) -> str:
    return re.sub(r"\s+", " ", name).strip().lower()


def parse_classes(prompt: str | Sequence[str]) -> list[str]:
    """The class names of a prompt, by the module's rule (lower case, duplicates dropped).

    ``"Cat . traffic  light."`` -> ``["cat", "traffic light"]``: a string is split on ``"."``
    and empty parts are dropped. ``["Cat", " dog."]`` -> ``["cat", "dog"]``: a leading or
    trailing ``"."`` of a list item is stripped; an empty item is an error (it is more likely
    a mistake than a wish). ``"cat . dog . cat"`` -> ``["cat", "dog"]``.

    Raises:
        PromptError: the prompt is empty or not text, an item is not a string or is empty, or
            a name contains ``"."`` or ``"?"`` inside it (Grounding DINO would read two
            classes).
    """
    if isinstance(prompt, str):
        if "?" in prompt:
            raise PromptError(
                f"prompt {prompt!r} contains '?', which Grounding DINO treats as a class "
                "separator; remove it or separate classes with ' . '"
            )
        names = [c for c in (_clean(part) for part in prompt.split(".")) if c]
    else:
        try:
            items = list(prompt)
        except TypeError:
            raise PromptError(
                f"prompt must be a string like 'cat . dog' or a list of class names, "
                f"got {type(prompt).__name__}"
            ) from None
        names = []
        for i, item in enumerate(items):
            if not isinstance(item, str):
                raise PromptError(
                    f"class {i} of the prompt is {type(item).__name__}, expected a string"
                )
            name = _clean(item).strip("".join(DELIMITERS) + " ")
            if not name:
                raise PromptError(f"class {i} of the prompt is empty ({item!r}); remove it")
            for d in DELIMITERS:
                if d in name:
                    raise PromptError(
                        f"class {i} ({item!r}) contains {d!r}, which Grounding DINO treats "
                        "as a class separator; remove it from the name"
                    )
            names.append(name)
    if not names:
        raise PromptError(
            f"empty prompt {prompt!r}: it names no class; write classes separated by ' . ', "
            f"e.g. 'cat . dog' or ['cat', 'dog']"
        )
    return list(dict.fromkeys(names))
