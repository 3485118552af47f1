"""The app as somebody else's project gets it: built into a wheel, installed, wired as docs/installation.md says.

Everything else in the suite imports ``accounts`` from this repository, next to the demo project's
settings and templates, so a file left out of the package (a migration, a template, the static CSS)
or a step the docs forget would go unnoticed. This test builds the sdist and, from it, the wheel
(as ``python -m build`` does), checks what they hold, installs the wheel into a fresh virtual
environment, starts a new project with ``django-admin startproject``, wires the app in exactly as
docs/installation.md says, and signs in end to end against the OpenID
provider double served by this process.

The fresh environment gets the wheel's dependencies at the versions this suite runs with (its own
installed distributions are the constraints), from the package index and pip's cache. Every
subprocess has a timeout. Plain (no marker): it runs once per ``pytest`` run, not in the services pass.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import requests
from cryptography.fernet import Fernet

from tests.op_double import OpenIDProviderDouble
from tests.sites import REQUEST_TIMEOUT, ROOT, SiteProcess

DISTRIBUTION = "django-oidc-signin"
BUILD_TIMEOUT = 300
INSTALL_TIMEOUT = 600
COMMAND_TIMEOUT = 120
#: Directories of the repository that belong to the demo site, the tests or the tooling, never to the app.
NOT_THE_APP = ("project/", "devidp/", "tests/", "bench/", "docs/", "templates/", ".ci/")


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None, timeout: float = COMMAND_TIMEOUT) -> str:
    done = subprocess.run(
        [str(arg) for arg in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"{' '.join(map(str, args[:4]))} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def outside_environment() -> dict[str, str]:
    """This process's environment without what would point a child at this repository or its settings."""
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DJANGO_", "ACCOUNTS_", "PYTHON", "VIRTUAL_ENV", "DATABASE_URL", "CACHE_URL"))
    } | {"PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}


def build(tmp_path: Path) -> tuple[Path, Path]:
    """The sdist and the wheel, built from a copy of the checkout (a build writes into its source tree)."""
    source = tmp_path / "source"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", ".venvs", ".nox", ".*_cache", "__pycache__", "artifacts", "build", "dist",
            "*.egg-info", "db.sqlite3*", "staticfiles", "node_modules",
        ),
    )  # fmt: skip
    dist = tmp_path / "dist"
    # Classifiers were checked against the trove-classifiers list; the build must not go online for it.
    env = {**outside_environment(), "VALIDATE_PYPROJECT_NO_NETWORK": "1"}
    run(sys.executable, "-m", "build", "--outdir", dist, source, cwd=tmp_path, env=env, timeout=BUILD_TIMEOUT)
    (sdist,) = dist.glob("*.tar.gz")
    (wheel,) = dist.glob("*.whl")
    return sdist, wheel


def assert_holds_the_app_only(names: list[str]) -> None:
    assert "accounts/__init__.py" in names
    assert "accounts/py.typed" in names
    assert "accounts/urls.py" in names
    assert "accounts/management/commands/oidc_provider.py" in names
    app = ROOT / "accounts"
    for kind in ("migrations", "templates", "static", "locale"):
        expected = {
            path.relative_to(ROOT).as_posix()
            for path in (app / kind).rglob("*")
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
        }
        assert expected <= set(names), f"{kind} missing: {sorted(expected - set(names))}"
    assert any(name.startswith("accounts/migrations/0001_") for name in names)
    assert "accounts/templates/oidc_signin/login.html" in names
    assert {
        "accounts/templates/oidc_signin/includes/provider_buttons.html",
        "accounts/templatetags/oidc_signin.py",
        "accounts/locale/de/LC_MESSAGES/django.po",
        "accounts/locale/de/LC_MESSAGES/django.mo",
    } <= set(names)
    assert not [name for name in names if name.startswith(NOT_THE_APP) or name == "manage.py"], names
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")], names


def constraints(tmp_path: Path) -> Path:
    """Pin the fresh environment to the versions this suite runs with (Django, Authlib, joserfc, ...)."""
    pins = sorted(
        {
            f"{dist.metadata['Name']}=={dist.version}"
            for dist in importlib.metadata.distributions()
            if dist.metadata["Name"] and dist.metadata["Name"].lower() not in {DISTRIBUTION, "pip", "setuptools"}
        }
    )
    path = tmp_path / "constraints.txt"
    path.write_text("\n".join(pins) + "\n")
    return path


class InstalledSite(SiteProcess):
    """A ``startproject`` site served by the fresh environment's interpreter (see ``tests/sites.py``)."""

    def __init__(self, site: Path, python: Path) -> None:
        super().__init__(site)
        self.python = str(python)
        self.cwd = site
        # The deployment's own key for client secrets, which the documented settings read from the environment.
        self.env = outside_environment() | {"ACCOUNTS_CLIENT_SECRET_KEYS": Fernet.generate_key().decode()}


def wire_as_the_docs_say(site: Path) -> None:
    """docs/installation.md, step 2, as written (plus plain http for the local double)."""
    settings = site / "mysite" / "settings.py"
    settings.write_text(settings.read_text() + "\n" + documented_block("settings.py") + FOR_THE_DOUBLE)
    urls = site / "mysite" / "urls.py"
    urls.write_text(urls.read_text() + "\n" + documented_block("urls.py"))


def documented_block(filename: str) -> str:
    """The fenced Python block of docs/installation.md whose first line is ``# <filename>``."""
    text = (ROOT / "docs" / "installation.md").read_text()
    [block] = re.findall(rf"```python\n(# {re.escape(filename)}\n.*?)```", text, re.DOTALL)
    return block


FOR_THE_DOUBLE = """
# The provider double serves plain http on 127.0.0.1 (a test, not a deployment).
DEBUG = True
ACCOUNTS_OIDC_ALLOW_INSECURE_HTTP = True
"""
#: Which ``accounts`` the new project imports, its URL namespace and its version.
WHICH_ACCOUNTS = "import accounts, accounts.urls as u; print(accounts.__file__, u.app_name, accounts.__version__)"


def test_the_wheel_installed_in_a_new_project_signs_in_end_to_end(tmp_path):
    sdist, wheel = build(tmp_path)

    assert wheel.name.startswith("django_oidc_signin-0.1.0-"), wheel.name
    with zipfile.ZipFile(wheel) as archive:
        wheel_names = archive.namelist()
        metadata = archive.read("django_oidc_signin-0.1.0.dist-info/METADATA").decode()
    assert_holds_the_app_only([name for name in wheel_names if ".dist-info/" not in name])
    assert "django_oidc_signin-0.1.0.dist-info/licenses/LICENSE" in wheel_names
    assert "Requires-Dist: Django<7,>=5.2" in metadata
    assert "Requires-Dist: django-environ" not in metadata  # the demo project's, not the app's
    with tarfile.open(sdist) as archive:
        prefix = "django_oidc_signin-0.1.0/"
        sdist_names = [name.removeprefix(prefix) for name in archive.getnames() if name.startswith(prefix)]
    assert {"pyproject.toml", "LICENSE", "README.md", "CHANGELOG.md"} <= set(sdist_names)
    assert_holds_the_app_only([n for n in sdist_names if n.startswith("accounts/")])
    assert not [n for n in sdist_names if n.startswith(NOT_THE_APP) or n == "manage.py"], sdist_names

    # A fresh virtual environment with the wheel and its dependencies, nothing of this checkout.
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    run(
        sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--disable-pip-version-check",
        "--constraint", constraints(tmp_path), wheel,
        cwd=tmp_path, env=outside_environment(), timeout=INSTALL_TIMEOUT,
    )  # fmt: skip
    # ("site" itself would shadow Python's own site module: startproject refuses that name.)
    run(venv / "bin" / "django-admin", "startproject", "mysite", cwd=tmp_path, env=outside_environment())
    site_dir = tmp_path / "mysite"
    wire_as_the_docs_say(site_dir)
    site = InstalledSite(site_dir, python)

    installed_at, app_name, version = site.manage("shell", "-c", WHICH_ACCOUNTS).splitlines()[-1].split()
    assert Path(installed_at).is_relative_to(venv) and "site-packages" in Path(installed_at).parts, installed_at
    assert not Path(installed_at).is_relative_to(ROOT), installed_at
    assert (version, app_name) == ("0.1.0", "oidc_signin")
    site.manage("check", "--fail-level", "WARNING")  # the documented wiring leaves no warning (oidc_signin.E010, ...)

    with OpenIDProviderDouble() as op, site:  # start() migrates, then serves with runserver --noreload
        site.add_provider("test-op", op)

        anonymous = requests.get(f"{site.url}/accounts/profile/", allow_redirects=False, timeout=REQUEST_TIMEOUT)
        assert anonymous.status_code == 302 and anonymous.headers["Location"].startswith("/accounts/login/")
        login_page = requests.get(f"{site.url}/accounts/login/", timeout=REQUEST_TIMEOUT)
        assert "/accounts/test-op/login/" in login_page.text, login_page.text[:2000]
        css = requests.get(f"{site.url}/static/oidc_signin/oidc_signin.css", timeout=REQUEST_TIMEOUT)
        assert css.status_code == 200 and css.text.strip(), css.status_code

        flow = site.start_sign_in(op, "test-op")  # GET /accounts/test-op/login/, then the double authorizes
        callback = flow.browser.get(flow.callback_url, allow_redirects=False, timeout=REQUEST_TIMEOUT)
        assert callback.status_code == 302, (callback.status_code, callback.text[:2000], site.log()[-3000:])
        assert callback.headers["Location"] == "/accounts/profile/"  # LOGIN_REDIRECT_URL, as documented
        session = flow.browser.get(f"{site.url}/accounts/session/", timeout=REQUEST_TIMEOUT).json()
        assert session["authenticated"] is True, session
        assert session["user"]["username"] == "alice"
        assert [identity["issuer"] for identity in session["identities"]] == [op.issuer]
        profile = flow.browser.get(f"{site.url}/accounts/profile/", allow_redirects=False, timeout=REQUEST_TIMEOUT)
        assert profile.status_code == 200
