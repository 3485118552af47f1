"""JSON from outside, parsed with a bound on nesting: the fast path must never let depth through."""

from __future__ import annotations

import json

import pytest

from accounts.oidc import safejson


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("as_bytes", [False, True])
def test_nesting_up_to_the_limit_is_parsed(as_bytes):
    text = nested(safejson.MAX_DEPTH)
    assert safejson.loads(text.encode() if as_bytes else text) == json.loads(text)


@pytest.mark.parametrize("as_bytes", [False, True])
def test_one_level_more_is_refused(as_bytes):
    text = nested(safejson.MAX_DEPTH + 1)
    with pytest.raises(safejson.TooDeep):
        safejson.loads(text.encode() if as_bytes else text)


def test_many_brackets_inside_strings_are_not_nesting():
    """Past the bracket count the structure is walked, so text in strings costs nothing but time."""
    text = json.dumps({"note": "{[" * 100, "list": [1, 2, 3]})
    assert safejson.loads(text)["list"] == [1, 2, 3]


def test_deep_nesting_among_many_siblings_is_refused():
    text = json.dumps({"wide": [[] for _ in range(50)], "deep": json.loads(nested(safejson.MAX_DEPTH + 5))})
    with pytest.raises(safejson.TooDeep):
        safejson.loads(text)


def test_nesting_deeper_than_the_parser_can_go_is_refused_too():
    with pytest.raises(safejson.TooDeep):
        safejson.loads(nested(100_000))
