"""The shape of the code, checked: data flows one way and the protocol layer stands on its own.

The import graph of ``accounts`` is read from the source (typing-only imports included: a cycle
there is still a cycle for whoever reads the code), so a new import that closes a loop, or makes
``accounts.oidc`` depend on product modules, fails here rather than in review.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parent.parent / "accounts"

#: What the protocol layer may import from the rest of the app: leaf modules with no product logic.
OIDC_MAY_IMPORT = {"accounts.errors", "accounts.conf"}


def module_name(path: Path) -> str:
    parts = path.relative_to(APP.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every ``accounts`` module ``path`` imports, at any level, resolved to module names."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return {m for m in found if m.startswith("accounts")}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in APP.rglob("*.py") if "migrations" not in p.parts}
    return {name: {m for m in imports_of(path) if m in modules and m != name} for name, path in modules.items()}


def test_no_import_cycles(graph):
    def cycle_from(start: str) -> list[str] | None:
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    return [*path, start]
                if nxt not in seen and not nxt.startswith(start + "."):
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
        return None

    cycles = [c for c in map(cycle_from, sorted(graph)) if c and not any(m.endswith("__init__") for m in c)]
    # A package importing its own submodules (accounts.oidc -> accounts.oidc.x) is not a cycle of modules.
    cycles = [c for c in cycles if not all(m.startswith(c[0] + ".") or m == c[0] for m in c)]
    assert cycles == []


def test_the_protocol_layer_imports_nothing_product_level(graph):
    reaching_out = {
        (name, target)
        for name, targets in graph.items()
        if name.startswith("accounts.oidc")
        for target in targets
        if not target.startswith("accounts.oidc") and target not in OIDC_MAY_IMPORT
    }
    assert reaching_out == set()


def test_the_stored_userinfo_choices_are_the_policies_the_client_knows():
    from accounts.choices import Userinfo
    from accounts.oidc.config import UserinfoPolicy

    assert set(Userinfo.values) == {policy.value for policy in UserinfoPolicy}
