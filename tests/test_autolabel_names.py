"""The output-name rule: safe, unique, the same for every listing order."""

from __future__ import annotations

import pytest

from grounded_sam.autolabel.names import output_names


@pytest.mark.parametrize(
    ("listing", "name", "expected"),
    [
        (["a.png"], "a.png", "a.png"),
        (["sub/dir/a.png"], "sub/dir/a.png", "sub/dir/a.png"),
        (["x/y.png", "x\\y.png"], "x/y.png", "x/y.png"),
        (["x/y.png", "x\\y.png"], "x\\y.png", "x_y~*.png"),
        (["q\\..\\..\\..\\evil.png"], "q\\..\\..\\..\\evil.png", "q_.._.._.._evil~*.png"),
        (["../evil.png"], "../evil.png", "_/evil~*.png"),
        (["./a.png"], "./a.png", "_/a~*.png"),
        (["c:d.png"], "c:d.png", "c_d~*.png"),
        (["tab\there.png"], "tab\there.png", "tab_here~*.png"),
        (["a.jpg", "a.png"], "a.jpg", "a.jpg"),
        (["a.jpg", "a.png"], "a.png", "a~*.png"),
        (["A.png", "a.png"], "a.png", "a~*.png"),
    ],
)
def test_output_names(listing, name, expected):
    got = output_names(listing)[name]
    head, _, tail = expected.partition("*")
    assert got.startswith(head) and got.endswith(tail), got
    if "*" in expected:
        assert len(got) == len(head) + 8 + len(tail)


def test_names_are_unique_safe_and_order_independent():
    listing = [
        "x/y.png",
        "x\\y.png",
        "x_y.png",
        "a.jpg",
        "a.png",
        "A.PNG",
        "..\\..\\e.png",
        "sub/../e.png",
        "e.png",
    ]
    names = output_names(listing)
    assert output_names(reversed(listing)) == names
    stems = [n.rsplit(".", 1)[0].casefold() for n in names.values()]
    assert len(set(stems)) == len(listing)  # the exports replace the suffix: stems must differ
    for name in names.values():
        parts = name.split("/")
        assert "\\" not in name and ".." not in parts and "." not in parts and "" not in parts


def test_a_crafted_name_equal_to_a_tagged_one_still_gets_its_own():
    tagged = output_names(["x\\y.png"])["x\\y.png"]
    names = output_names(["x\\y.png", tagged])
    assert len({n.casefold() for n in names.values()}) == 2
