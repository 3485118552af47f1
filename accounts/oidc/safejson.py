"""JSON from outside this site, parsed with a bound on how deeply it may nest.

Valid JSON can nest thousands of levels deep. Python parses that, but every later walk of it --
storing claims, pickling a document into the cache, serialising a session -- recurses and blows
the stack (or spins for seconds first). No provider document or token needs more than a few
levels, so anything deeper is refused where it enters: in the HTTP helper and in token payloads.

Valid JSON can also carry text that no database stores: a NUL (``\\u0000``, refused by PostgreSQL's
text and jsonb) or half of a UTF-16 surrogate pair (``\\ud800``), which no UTF-8 encoder accepts --
not SQLite's driver, not psycopg, not a log file's stream. ``unstorable`` is the one check of such
characters: token and claim rules refuse them in identity keys (``iss``, ``sub``, ``sid``...) before
any query, and ``accounts.claims.storable`` drops profile values holding them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

#: Deepest nesting accepted in any provider answer or token payload. Discovery documents, key
#: sets and claims nest three or four levels; address claims and Microsoft's ``_claim_sources`` a
#: few more. 32 leaves room for any honest provider and none for a stack-overflow attack.
MAX_DEPTH = 32


#: NUL and the UTF-16 surrogates (U+D800-U+DFFF): what JSON can carry and no database can store.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def unstorable(value: str) -> str | None:
    """What in ``value`` no database can store ("a NUL character", "a lone surrogate"), or None.

    Text decoded from JSON holds a surrogate only when the JSON escaped one that has no partner
    (a proper pair decodes to one character beyond U+FFFF), so any surrogate found is a lone one.
    """
    found = _UNSTORABLE.search(value)
    if found is None:
        return None
    return "a NUL character" if found.group() == "\x00" else "a lone surrogate"


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
