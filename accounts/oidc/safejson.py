"""JSON from outside this site, parsed with a bound on how deeply it may nest.

Valid JSON can nest thousands of levels deep. Python parses that, but every later walk of it --
storing claims, pickling a document into the cache, serialising a session -- recurses and blows
the stack (or spins for seconds first). No provider document or token needs more than a few
levels, so anything deeper is refused where it enters: in the HTTP helper and in token payloads.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

#: Deepest nesting accepted in any provider answer or token payload. Discovery documents, key
#: sets and claims nest three or four levels; address claims and Microsoft's ``_claim_sources`` a
#: few more. 32 leaves room for any honest provider and none for a stack-overflow attack.
MAX_DEPTH = 32


class TooDeep(ValueError):
    """The JSON nests deeper than ``MAX_DEPTH``."""


def loads(text: str | bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` that raises ``TooDeep`` for over-nested input and ``ValueError`` for non-JSON."""
    try:
        value = json.loads(text)
    except RecursionError as exc:  # nested so deep that the parser itself gave up
        raise TooDeep(f"JSON nests more than {max_depth} levels deep") from exc
    # Each level of nesting opens with a bracket, so text with few of them cannot nest deeply: the
    # common case (a token payload, a key set) is settled by two counts in C instead of a walk.
    brackets = text.count(b"{") + text.count(b"[") if isinstance(text, bytes) else text.count("{") + text.count("[")
    if brackets <= max_depth:
        return value
    if depth_exceeds(value, max_depth):
        raise TooDeep(f"JSON nests more than {max_depth} levels deep")
    return value


def depth_exceeds(value: Any, max_depth: int = MAX_DEPTH) -> bool:
    """Whether ``value`` (decoded JSON) nests deeper than ``max_depth``; iterative, so it cannot overflow."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children: Iterable[Any]
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > max_depth:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False
