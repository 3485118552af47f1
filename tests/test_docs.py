"""The documentation in docs/ stays true: every setting documented with its real default."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from accounts.conf import AppSettings

DOCS = Path(__file__).resolve().parent.parent / "docs"


def documented_settings() -> dict[str, str]:
    """``{name: default}`` from the tables of docs/settings.md."""
    rows = re.findall(r"^\| `(ACCOUNTS_[A-Z_]+)` \| `([^`]+)` \|", (DOCS / "settings.md").read_text(), re.MULTILINE)
    return dict(rows)


def test_every_setting_is_documented_with_its_default():
    documented = documented_settings()
    for setting in AppSettings.all():
        assert setting.name in documented, f"{setting.name} is missing from docs/settings.md"
        assert ast.literal_eval(documented[setting.name]) == setting.default, setting.name


def test_nothing_is_documented_that_is_not_a_setting():
    assert set(documented_settings()) == {setting.name for setting in AppSettings.all()}


def test_the_readme_links_every_page_of_the_docs():
    readme = (DOCS.parent / "README.md").read_text()
    for page in sorted(DOCS.glob("*.md")):
        assert f"docs/{page.name}" in readme, f"README.md does not link docs/{page.name}"


def test_every_adapter_method_and_signal_is_in_the_customisation_guide():
    from django.dispatch import Signal

    from accounts import signals
    from accounts.adapter import DefaultAccountAdapter

    guide = (DOCS / "customisation.md").read_text()
    methods = [name for name in vars(DefaultAccountAdapter) if not name.startswith("_") and name != "get_client"]
    for name in methods:
        assert f"| `{name}(" in guide, f"adapter method {name} is not in docs/customisation.md"
    for name, value in vars(signals).items():
        if isinstance(value, Signal):
            assert f"| `{name}` |" in guide, f"signal {name} is not in docs/customisation.md"


def test_the_readme_module_table_names_every_module_of_the_app():
    """A newcomer finds each module in the README's table, and the table names no module that is gone."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text()
    table = "\n".join(line for line in readme.splitlines() if line.startswith("| `accounts/"))
    named = set(re.findall(r"`(accounts/[\w/]+\.py)`", table))
    modules = {
        str(path.relative_to(root))
        for path in (root / "accounts").rglob("*.py")
        if "migrations" not in path.parts and "management" not in path.parts and path.name != "__init__.py"
    }
    assert named <= modules, named - modules
    assert modules - named == set()
