"""The app installs beside a project's own app labelled ``accounts``, the commonest app name.

Ours is labelled ``oidc_signin`` (tables, admin URLs, URL namespace, templates, static files,
cache keys and session keys), so a project's ``accounts`` app, its ``accounts_*`` tables and its
``accounts`` URL namespace stay its own. Run in its own process: the installed apps are fixed at
start-up.
"""

from __future__ import annotations

import pytest
import requests

from tests.op_double import DEFAULT_USER, OpenIDProviderDouble
from tests.sites import REQUEST_TIMEOUT, SiteProcess


@pytest.fixture(scope="module")
def op():
    with OpenIDProviderDouble() as double:
        yield double


@pytest.fixture(scope="module")
def site(tmp_path_factory, op):
    with SiteProcess(
        tmp_path_factory.mktemp("ownaccounts"), prefix="/signin", DJANGO_SETTINGS_MODULE="tests.settings_ownaccounts"
    ) as site:
        site.add_provider("test-op", op)
        yield site


def test_both_apps_keep_their_own_tables(site):
    tables = {row[0] for row in site.query("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "accounts_profile" in tables
    assert {"oidc_signin_provider", "oidc_signin_identity", "oidc_signin_signinevent"} <= tables


def test_a_sign_in_completes_beside_the_projects_own_accounts_namespace(site, op):
    op.next_user = {**DEFAULT_USER, "sub": "alice-1", "preferred_username": "alice"}
    flow = site.start_sign_in(op, "test-op")
    assert flow.callback_url.startswith(f"{site.url}/signin/test-op/callback/")
    assert site.finish_sign_in(flow) == (302, "alice"), site.log()[-2000:]
    assert site.query("SELECT issuer, subject FROM oidc_signin_identity") == [(op.issuer, "alice-1")]


def test_each_namespace_resolves_to_its_own_app(site):
    own = requests.get(f"{site.url}/accounts/", timeout=REQUEST_TIMEOUT).json()
    assert own == {"own": "/accounts/", "sign_in": "/signin/login/"}
    page = requests.get(f"{site.url}/signin/login/", timeout=REQUEST_TIMEOUT)
    assert page.status_code == 200 and 'href="/signin/test-op/login/' in page.text
