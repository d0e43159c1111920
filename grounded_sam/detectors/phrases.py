"""Prompts, token spans, phrases and class ids for Grounding DINO. numpy only, no model.

Grounding DINO scores every (query, text token) pair. Turning those scores into a label is
where other tools go wrong: they join every token above a threshold ("cat dog", "cat. dog.
[SEP]"), print word pieces ("##hy") or give no class id at all. Here:

- a prompt is a list of classes, normalised (:func:`grounded_sam.classes.parse_classes`)
  and written as ``"cat . traffic light ."`` (:class:`Prompt`); each class occupies one character span;
- the tokenizer's offsets map every token to the class span it lies in, or to none for
  ``[CLS]``, ``[SEP]`` and the ``"."`` separators (:class:`PromptTokens`);
- a query's score is its best token probability and its class is the class whose span holds
  that token, -1 when the token lies outside every span (:func:`score_queries`);
- its phrase is built from whole words of ONE span (:func:`build_phrases`).

Shapes: ``Q`` queries, ``T`` tokens of the tokenised prompt (``[CLS]`` and ``[SEP]`` included),
``S`` class spans in the prompt text, ``C`` classes in the user's list.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from grounded_sam.classes import parse_classes


@dataclass(frozen=True)
class Prompt:
    """The text Grounding DINO reads for some (or all) classes of a class list.

    Attributes:
        classes: the classes by :func:`grounded_sam.classes.parse_classes` (lower case, each
            once); ``class_id`` indexes it.
        text: the classes of ``span_class`` joined by ``" . "``, ending in ``" ."``,
            e.g. ``"cat . traffic light ."``.
        spans: (S, 2) int64, ``[start, end)`` character range of each span in ``text``.
        span_class: (S,) int64, the class id of each span.
    """

    classes: tuple[str, ...]
    text: str
    spans: np.ndarray
    span_class: np.ndarray

    @classmethod
    def from_classes(
        cls, classes: str | Sequence[str], include: Sequence[int] | None = None
    ) -> Prompt:
        """Normalise ``classes`` and write the text for the classes with ids in ``include``.

        ``include`` (default: all) lets a long vocabulary be split into several prompts
        whose class ids all index the same full list; an id given twice is written once.
        """
        names = tuple(parse_classes(classes))
        ids = range(len(names)) if include is None else include
        span_class: list[int] = []
        for i in ids:
            if not 0 <= int(i) < len(names):
                raise IndexError(f"class id {i} out of range for {len(names)} classes")
            if int(i) not in span_class:
                span_class.append(int(i))
        spans, parts, pos = [], [], 0
        for j in span_class:
            spans.append((pos, pos + len(names[j])))
            parts.append(names[j])
            pos += len(names[j]) + 3  # " . "
        return cls(
            classes=names,
            text=" . ".join(parts) + " .",
            spans=np.asarray(spans, dtype=np.int64).reshape(-1, 2),
            span_class=np.asarray(span_class, dtype=np.int64),
        )

    def unique_class_ids(self) -> list[int]:
        """Ids of the classes, in list order (every class is distinct)."""
        return list(range(len(self.classes)))


@dataclass(frozen=True)
class PromptTokens:
    """A tokenised :class:`Prompt`, every token tied to a class span and a word.

    Attributes:
        prompt: the prompt that was tokenised.
        input_ids: (T,) int64 token ids, ``[CLS]`` first and ``[SEP]`` last.
        offsets: (T, 2) int64 ``[start, end)`` characters of each token in ``prompt.text``;
            (0, 0) for special tokens.
        token_span: (T,) int64 index of the span holding the token, -1 for ``[CLS]``,
            ``[SEP]``, ``"."`` and anything else outside the classes.
        token_word: (T,) int64 index of the whitespace-delimited word holding the token (word
            pieces ``tooth ##brush`` and ``t - shirt`` share one word), -1 outside spans.
    """

    prompt: Prompt
    input_ids: np.ndarray
    offsets: np.ndarray
    token_span: np.ndarray
    token_word: np.ndarray

    @classmethod
    def from_offsets(
        cls, prompt: Prompt, input_ids: Sequence[int], offsets: Sequence[Sequence[int]]
    ) -> PromptTokens:
        """Tie tokens to spans and words from a tokenizer's character offsets (pure numpy)."""
        ids = np.asarray(input_ids, dtype=np.int64).reshape(-1)
        off = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
        if len(off) != len(ids):
            raise ValueError(f"{len(ids)} input ids but {len(off)} offsets")
        token_span = np.full(len(ids), -1, dtype=np.int64)
        real = off[:, 1] > off[:, 0]
        for s, (a, b) in enumerate(prompt.spans):
            token_span[real & (off[:, 0] >= a) & (off[:, 1] <= b)] = s
        # A new word starts at a span token that does not touch the previous one.
        token_word = np.full(len(ids), -1, dtype=np.int64)
        word, prev_end, prev_span = -1, -1, -1
        for t in np.flatnonzero(token_span >= 0):
            if token_span[t] != prev_span or off[t, 0] != prev_end:
                word += 1
            token_word[t] = word
            prev_end, prev_span = int(off[t, 1]), int(token_span[t])
        return cls(prompt, ids, off, token_span, token_word)

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, prompt: Prompt) -> PromptTokens:
        """Tokenise ``prompt.text`` with a Hugging Face fast tokenizer (it must give offsets)."""
        if not getattr(tokenizer, "is_fast", True):
            raise TypeError(
                f"{type(tokenizer).__name__} cannot return character offsets; load the fast "
                "tokenizer (BertTokenizerFast / AutoTokenizer with use_fast=True)"
            )
        enc = tokenizer(prompt.text, return_offsets_mapping=True)
        return cls.from_offsets(prompt, enc["input_ids"], enc["offset_mapping"])

    @property
    def token_class(self) -> np.ndarray:
        """(T,) int64 class id of each token, -1 outside every class span."""
        out = np.full(len(self.input_ids), -1, dtype=np.int64)
        inside = self.token_span >= 0
        out[inside] = self.prompt.span_class[self.token_span[inside]]
        return out

    def __len__(self) -> int:
        return len(self.input_ids)


def _span_means(probs: np.ndarray, tokens: PromptTokens) -> np.ndarray:
    """(Q, S) mean probability of each span's tokens."""
    n_spans = len(tokens.prompt.spans)
    onehot = np.zeros((len(tokens), n_spans), dtype=np.float64)
    inside = tokens.token_span >= 0
    onehot[np.flatnonzero(inside), tokens.token_span[inside]] = 1.0
    counts = onehot.sum(0)
    if (counts == 0).any():
        raise ValueError("a class span holds no token; was the prompt tokenised with its text?")
    return probs.astype(np.float64) @ onehot / counts


def _check_probs(probs: np.ndarray, tokens: PromptTokens) -> np.ndarray:
    probs = np.asarray(probs)
    if probs.ndim != 2 or probs.shape[1] != len(tokens):
        raise ValueError(f"probs must have shape (Q, {len(tokens)}), got {probs.shape}")
    return probs


def score_queries(
    probs: np.ndarray, tokens: PromptTokens, class_restricted: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Score and class of every query.

    Args:
        probs: (Q, T) float, sigmoid of Grounding DINO's logits for the prompt's tokens.
        tokens: the tokenised prompt.
        class_restricted: ``False``: score = the query's best token probability over all T
            tokens (as transformers' post-processing), class = the class whose span holds
            that token, -1 when it is ``[CLS]``, ``[SEP]`` or a ``"."``. ``True``: score of a
            class = mean probability of its tokens; class = the best class, score = its mean.

    Returns:
        ``(scores, class_id)``: float32 (Q,) in [0, 1] and int64 (Q,) indexing
        ``tokens.prompt.classes`` (-1 for none; never -1 when ``class_restricted``).
    """
    probs = _check_probs(probs, tokens)
    if class_restricted:
        means = _span_means(probs, tokens)
        best = means.argmax(1)
        scores = means[np.arange(len(probs)), best]
        class_id = tokens.prompt.span_class[best]
    else:
        best = probs.argmax(1)
        scores = probs[np.arange(len(probs)), best]
        class_id = tokens.token_class[best]
    return scores.astype(np.float32), class_id.astype(np.int64)


def _words_text(tokens: PromptTokens, words: np.ndarray) -> str:
    """Text of the given word indices: runs of consecutive words sliced from the prompt text."""
    text = tokens.prompt.text
    off = tokens.offsets
    runs: list[str] = []
    words = np.unique(words)
    start = 0
    for i in range(1, len(words) + 1):
        if i == len(words) or words[i] != words[i - 1] + 1:
            first = np.flatnonzero(tokens.token_word == words[start])[0]
            last = np.flatnonzero(tokens.token_word == words[i - 1])[-1]
            runs.append(text[off[first, 0] : off[last, 1]])
            start = i
    return " ".join(runs)


def build_phrases(
    probs: np.ndarray,
    tokens: PromptTokens,
    text_threshold: float,
    class_restricted: bool = False,
) -> list[str]:
    """The phrase each query matched, from whole words of one class span.

    The span is the one holding the query's best token, so a phrase always agrees with the
    class id of :func:`score_queries`; when that token lies outside every span (class -1)
    the phrase is ``""``. Within the span the phrase keeps the words that have a token above
    ``text_threshold`` plus the word of the best token, in prompt order: ``"traffic light"``,
    or ``"light"`` when only "light" lit up; a word piece brings its whole word (``##brush``
    -> ``"toothbrush"``). With ``class_restricted`` the phrase is the whole name of the best
    class.

    Args:
        probs: (Q, T) float, sigmoid of the logits (usually only the kept queries).
        tokens: the tokenised prompt.
        text_threshold: in [0, 1].

    Returns:
        Q strings, no ``[CLS]``/``[SEP]``/``"."`` and no ``##`` pieces.
    """
    probs = _check_probs(probs, tokens)
    names = tokens.prompt.classes
    if class_restricted:
        _, class_id = score_queries(probs, tokens, class_restricted=True)
        return [names[c] for c in class_id]
    text_threshold = float(text_threshold)
    phrases: list[str] = []
    for p in probs:
        best = int(p.argmax())
        span = int(tokens.token_span[best])
        if span < 0:
            phrases.append("")
            continue
        member = tokens.token_span == span
        chosen = member & (p > text_threshold)
        chosen[best] = True
        phrases.append(_words_text(tokens, tokens.token_word[chosen]))
    return phrases
