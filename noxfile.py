"""The version matrix: the suite's SQLite pass on each supported Python and Django combination.

    .venv/bin/python -m nox -l               # list the sessions
    .venv/bin/python -m nox --python 3.13    # Python 3.13 + the newest Django 6.x (what .ci/run adds)
    .venv/bin/python -m nox                  # every combination

Each session installs requirements-dev.txt (the pins), then replaces Django with the newest release
of the line it tests, and runs ``pytest`` with ``DJANGO_DEBUG=0``, as the first pass of
``make test`` does (extra arguments after ``--`` go to pytest). Lint, mypy and the PostgreSQL +
Redis pass stay in ``make test``, on the pinned versions.

An interpreter is taken from PATH; when PATH only has pyenv shims for it (which fail for a
version that is not pyenv's active one), from the newest ``~/.pyenv/versions/X.Y.Z``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import nox

#: (Python, Django line): the oldest supported pair, then the newest ones.
MATRIX = [("3.11", "5.2"), ("3.12", "6.0"), ("3.13", "6.x")]
DJANGO = {"5.2": "Django>=5.2,<5.3", "6.0": "Django>=6.0,<6.1", "6.x": "Django>=6,<7"}

nox.options.error_on_missing_interpreters = True


def _on_path(name: str) -> bool:
    """Whether ``name`` is an executable on PATH other than a version manager's shim."""
    for entry in os.environ.get("PATH", "").split(os.pathsep):
        if entry and "shims" not in Path(entry).parts and os.access(Path(entry) / name, os.X_OK):
            return True
    return False


def _add_pyenv_interpreters(versions: list[str]) -> None:
    installed = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    found = []
    for version in versions:
        if _on_path(f"python{version}"):
            continue
        patch = re.compile(rf"{re.escape(version)}\.(\d+)")
        releases = [
            (int(match.group(1)), path / "bin")
            for path in (installed.iterdir() if installed.is_dir() else ())
            if (match := patch.fullmatch(path.name)) and (path / "bin" / f"python{version}").exists()
        ]
        if releases:
            found.append(str(max(releases)[1]))
    if found:
        os.environ["PATH"] = os.pathsep.join([*found, os.environ.get("PATH", "")])


_add_pyenv_interpreters(sorted({python for python, _ in MATRIX}))


@nox.session
@nox.parametrize(
    ("python", "django"),
    MATRIX,
    ids=[f"{python}-django{django}" for python, django in MATRIX],
)
def tests(session: nox.Session, django: str) -> None:
    session.install("-r", "requirements-dev.txt")
    session.install(DJANGO[django])
    session.run("python", "-m", "django", "--version")
    session.run("python", "-m", "pytest", *session.posargs, env={"DJANGO_DEBUG": "0"})
