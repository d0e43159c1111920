"""Prompt normalisation, token spans, phrases and class ids on hand-made probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from grounded_sam.detectors.phrases import (
    Prompt,
    PromptTokens,
    build_phrases,
    score_queries,
)

# ---------------------------------------------------------------------------- prompts


def test_prompt_text_and_spans():
    p = Prompt.from_classes("Cat . traffic light . toothbrush")
    assert p.text == "cat . traffic light . toothbrush ."
    assert p.classes == ("cat", "traffic light", "toothbrush")
    assert [p.text[a:b] for a, b in p.spans] == list(p.classes)
    assert p.span_class.tolist() == [0, 1, 2]


def test_repeated_class_is_written_once_and_ids_index_the_unique_list():
    p = Prompt.from_classes(["cat", "dog", "Cat", "bird"])
    assert p.classes == ("cat", "dog", "bird")
    assert p.text == "cat . dog . bird ."
    assert p.span_class.tolist() == [0, 1, 2]
    assert p.unique_class_ids() == [0, 1, 2]
    # a chunk of the vocabulary keeps the full list's ids; an id given twice is written once
    chunk = Prompt.from_classes(p.classes, include=[2, 0, 2])
    assert chunk.text == "bird . cat ."
    assert chunk.span_class.tolist() == [2, 0]
    assert chunk.classes == p.classes


# ---------------------------------------------------------------------------- tokens


def make_tokens(prompt: Prompt, pieces: list[str]) -> PromptTokens:
    """Tokens of ``prompt.text`` written by hand (``##`` marks a word piece); offsets found by
    scanning the text, [CLS]/[SEP] added around, ids are just positions."""
    offsets = [(0, 0)]
    pos = 0
    for piece in pieces:
        body = piece[2:] if piece.startswith("##") else piece
        start = prompt.text.index(body, pos)
        offsets.append((start, start + len(body)))
        pos = start + len(body)
    offsets.append((0, 0))
    assert pos == len(prompt.text), "pieces must cover the whole prompt text"
    return PromptTokens.from_offsets(prompt, np.arange(len(offsets)), offsets)


@pytest.fixture
def tokens() -> PromptTokens:
    # [CLS] cat . traffic light . tooth ##brush . t - shirt . big red dog . [SEP]
    #   0    1  2    3      4   5   6     7     8 9 10  11  12 13  14  15 16  17
    prompt = Prompt.from_classes(["cat", "traffic light", "toothbrush", "t-shirt", "big red dog"])
    pieces = "cat . traffic light . tooth ##brush . t - shirt . big red dog .".split()
    return make_tokens(prompt, pieces)


def probs_with(tokens: PromptTokens, values: dict[int, float], base: float = 0.05) -> np.ndarray:
    p = np.full((1, len(tokens)), base, dtype=np.float32)
    for t, v in values.items():
        p[0, t] = v
    return p


def test_tokens_map_to_spans_and_words(tokens):
    assert tokens.token_class.tolist() == [
        -1,
        0,
        -1,
        1,
        1,
        -1,
        2,
        2,
        -1,
        3,
        3,
        3,
        -1,
        4,
        4,
        4,
        -1,
        -1,
    ]
    # word pieces and "t-shirt" share a word; "traffic" and "light" are two words
    w = tokens.token_word
    assert w[6] == w[7] and w[9] == w[10] == w[11]
    assert w[3] != w[4]
    assert (w[[0, 2, 5, 8, 12, 16, 17]] == -1).all()


# ---------------------------------------------------------------------------- scores and classes


def test_score_is_best_token_and_class_is_its_span(tokens):
    probs = np.concatenate(
        [
            probs_with(tokens, {1: 0.9, 4: 0.6}),  # cat
            probs_with(tokens, {4: 0.8, 1: 0.7}),  # light -> traffic light
            probs_with(tokens, {7: 0.95}),  # ##brush -> toothbrush
            probs_with(tokens, {2: 0.99, 1: 0.5}),  # "." is best: no class
            probs_with(tokens, {0: 0.97}),  # [CLS] is best: no class
            probs_with(tokens, {17: 0.97, 14: 0.9}),  # [SEP] is best: no class
        ]
    )
    scores, class_id = score_queries(probs, tokens)
    np.testing.assert_allclose(scores, [0.9, 0.8, 0.95, 0.99, 0.97, 0.97])
    assert scores.dtype == np.float32 and class_id.dtype == np.int64
    assert class_id.tolist() == [0, 1, 2, -1, -1, -1]


def phrase(tokens, values, text_threshold=0.25, **kw):
    return build_phrases(probs_with(tokens, values), tokens, text_threshold, **kw)[0]


def test_merged_spans_give_one_class_only(tokens):
    # cat and dog both light up: the phrase is the best one's, never "cat dog"
    assert phrase(tokens, {1: 0.6, 15: 0.8}) == "dog"
    assert phrase(tokens, {1: 0.8, 15: 0.6, 3: 0.7, 4: 0.7}) == "cat"


def test_word_pieces_become_whole_words(tokens):
    assert phrase(tokens, {7: 0.9}) == "toothbrush"
    assert phrase(tokens, {6: 0.9, 7: 0.1}) == "toothbrush"
    assert phrase(tokens, {11: 0.9}) == "t-shirt"
    assert phrase(tokens, {10: 0.9}) == "t-shirt"


def test_multi_word_class(tokens):
    assert phrase(tokens, {3: 0.6, 4: 0.9}) == "traffic light"
    # only "light" above the text threshold: only that word
    assert phrase(tokens, {3: 0.2, 4: 0.9}) == "light"
    # non-adjacent words keep their order and are joined by one space
    assert phrase(tokens, {13: 0.9, 14: 0.1, 15: 0.5}) == "big dog"
    assert phrase(tokens, {13: 0.9, 14: 0.3, 15: 0.5}) == "big red dog"


def test_best_word_is_kept_below_text_threshold(tokens):
    assert phrase(tokens, {4: 0.2, 3: 0.15}, text_threshold=0.25) == "light"


def test_text_threshold_is_strict(tokens):
    assert phrase(tokens, {4: 0.9, 3: 0.25}, text_threshold=0.25) == "light"
    assert phrase(tokens, {4: 0.9, 3: 0.2501}, text_threshold=0.25) == "traffic light"


def test_tokens_outside_spans_give_no_phrase(tokens):
    # the best token is a separator: class -1 and an empty phrase, even when class tokens
    # are also above the threshold (phrase and class id always agree)
    values = {5: 0.99, 3: 0.9, 4: 0.9, 0: 0.5, 17: 0.5}
    assert phrase(tokens, values) == ""
    assert score_queries(probs_with(tokens, values), tokens)[1].tolist() == [-1]
    # separators and special tokens above the threshold never enter a phrase
    assert phrase(tokens, {1: 0.99, 0: 0.9, 2: 0.9, 17: 0.9}) == "cat"


def test_repeated_class_maps_to_first_occurrence():
    prompt = Prompt.from_classes("cat . dog . cat")
    tokens = make_tokens(prompt, "cat . dog .".split())
    probs = np.concatenate([probs_with(tokens, {1: 0.9}), probs_with(tokens, {3: 0.9})])
    _, class_id = score_queries(probs, tokens)
    assert class_id.tolist() == [0, 1]
    assert build_phrases(probs, tokens, 0.25) == ["cat", "dog"]
    assert [prompt.classes[c] for c in class_id] == ["cat", "dog"]


def test_class_restricted_scores_are_class_means(tokens):
    values = {15: 0.7, 3: 0.95, 4: 0.1, 13: 0.7, 14: 0.7, 2: 0.999}
    probs = probs_with(tokens, values)
    scores, class_id = score_queries(probs, tokens, class_restricted=True)
    # means: cat .05, traffic light .525, toothbrush .05, t-shirt .05, big red dog .7
    assert class_id.tolist() == [4]
    np.testing.assert_allclose(scores, [0.7], rtol=1e-6)
    assert build_phrases(probs, tokens, 0.25, class_restricted=True) == ["big red dog"]
    # the default mode picks the single best token instead
    scores, class_id = score_queries(probs, tokens)
    assert class_id.tolist() == [-1]
    np.testing.assert_allclose(scores, [0.999], rtol=1e-6)


def test_class_restricted_never_returns_minus_one(tokens):
    rng = np.random.default_rng(0)
    probs = rng.random((50, len(tokens))).astype(np.float32)
    probs[:, [0, 2, 5, 17]] = 1.0  # separators and specials always best
    _, class_id = score_queries(probs, tokens, class_restricted=True)
    assert (class_id >= 0).all()
    phrases = build_phrases(probs, tokens, 0.25, class_restricted=True)
    assert phrases == [tokens.prompt.classes[c] for c in class_id]


def test_random_probs_keep_phrase_and_class_consistent(tokens):
    rng = np.random.default_rng(1)
    probs = rng.random((200, len(tokens))).astype(np.float32) ** 3
    _, class_id = score_queries(probs, tokens)
    phrases = build_phrases(probs, tokens, 0.3)
    for c, ph in zip(class_id, phrases, strict=True):
        if c < 0:
            assert ph == ""
        else:
            name = tokens.prompt.classes[c]
            assert ph and set(ph.split()) <= set(name.split())
            assert "#" not in ph and "." not in ph and "[" not in ph


def test_probs_shape_is_checked(tokens):
    with pytest.raises(ValueError, match="shape"):
        score_queries(np.zeros((3, len(tokens) + 1)), tokens)


# ---------------------------------------------------------------------------- real tokenizer


def test_fast_tokenizer_offsets(tmp_path):
    from grounded_sam.testing.grounding_dino import tiny_grounding_dino_processor

    tokenizer = tiny_grounding_dino_processor(tmp_path).tokenizer
    prompt = Prompt.from_classes(["Traffic light", "toothbrush", "t-shirt", "cat"])
    tokens = PromptTokens.from_tokenizer(tokenizer, prompt)
    pieces = tokenizer.convert_ids_to_tokens(tokens.input_ids.tolist())
    assert pieces[0] == "[CLS]" and pieces[-1] == "[SEP]"
    assert tokens.input_ids[[0, -1]].tolist() == [101, 102]
    assert "##brush" in pieces
    names = {tokens.prompt.classes[c] for c in tokens.token_class if c >= 0}
    assert names == set(prompt.classes)
    by_class = {
        prompt.classes[c]: [p for p, k in zip(pieces, tokens.token_class, strict=True) if k == c]
        for c in range(4)
    }
    assert by_class == {
        "traffic light": ["traffic", "light"],
        "toothbrush": ["tooth", "##brush"],
        "t-shirt": ["t", "-", "shirt"],
        "cat": ["cat"],
    }
    # separators are id 1012 and lie outside every span
    assert (tokens.token_class[tokens.input_ids == 1012] == -1).all()
    brush = pieces.index("##brush")
    p = np.full((1, len(tokens)), 0.01, np.float32)
    p[0, brush] = 0.9
    assert build_phrases(p, tokens, 0.25) == ["toothbrush"]
