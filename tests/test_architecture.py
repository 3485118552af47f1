"""The shape of the code: what the import-linter contracts (``.importlinter``) cannot say alone.

The layer rules themselves -- ``accounts.oidc`` imports nothing product-level, a sign-in flows one
way (view -> flow -> identities -> session), the protocol flows one way (client -> tokens ->
discovery -> HTTP), no import cycles -- are import-linter contracts, run by ``make lint`` and
``make test``; they are run here too, so that a plain ``pytest`` keeps them. What is left for this
file: that the contract's list of product modules names every module of the app, so a new module
is not silently allowed into the protocol layer.
"""

from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "accounts"
#: What the protocol layer may import from the rest of the app: leaf modules with no product logic.
OIDC_MAY_IMPORT = {"accounts.errors", "accounts.conf"}


def _contracts() -> configparser.ConfigParser:
    config = configparser.ConfigParser()
    config.read(ROOT / ".importlinter")
    return config


def test_the_import_contracts_are_kept():
    lint_imports = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([lint_imports], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_the_protocol_contract_names_every_product_module():
    forbidden = set(_contracts()["importlinter:contract:protocol-stands-alone"]["forbidden_modules"].split())
    top_level = {f"accounts.{p.stem}" for p in APP.glob("*.py") if p.stem != "__init__"}
    top_level |= {f"accounts.{p.parent.name}" for p in APP.glob("*/__init__.py")}
    product = top_level - OIDC_MAY_IMPORT - {"accounts.oidc", "accounts.migrations"}
    assert forbidden == product
