"""Started sign-ins cannot lock a browser out of the site (issue 19, point 6), through a real gunicorn.

A flow cookie rides on every request, and gunicorn refuses a header field over 8,190 bytes (nginx
a header over its 8 KB buffer) with a 400 for every page, sign-out included. Any page on the web
can make a browser start sign-ins here with top-level navigations. So: eight starts with
2,000-character incompressible ``next`` values, then a sign-in, through gunicorn, and every page
still answers; the ``Cookie`` header the flow cookies make is checked against its bound directly.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest
import requests

from accounts import pending
from tests.conftest import incompressible
from tests.op_double import OpenIDProviderDouble
from tests.sites import REQUEST_TIMEOUT, SiteProcess


@pytest.fixture
def op():
    with OpenIDProviderDouble() as double:
        yield double


def flow_cookie_header_bytes(browser: requests.Session) -> int:
    """What the flow cookies add to the ``Cookie`` header of the browser's next request."""
    return len("; ".join(f"{c.name}={c.value}" for c in browser.cookies if pending.COOKIE_PREFIX in c.name))


def test_eight_starts_with_the_longest_next_values_leave_every_page_answering_behind_gunicorn(tmp_path, op):
    with SiteProcess(tmp_path, gunicorn_workers=1) as site:
        site.add_provider("test-op", op)
        browser = requests.Session()
        start = f"{site.url}/accounts/test-op/login/"
        for n in range(8):
            next_url = f"/accounts/profile/?q={incompressible(2000, seed=str(n))}"
            response = browser.get(start, params={"next": next_url}, allow_redirects=False, timeout=REQUEST_TIMEOUT)
            assert response.status_code == 302, (n, response.status_code, response.text[:200])
            assert flow_cookie_header_bytes(browser) <= pending.MAX_COOKIE_HEADER_BYTES
        # Then a sign-in, in the same browser.
        started = browser.get(start, allow_redirects=False, timeout=REQUEST_TIMEOUT)
        assert started.status_code == 302, started.text[:200]
        params = op.authorize(dict(parse_qsl(urlsplit(started.headers["Location"]).query)))
        finished = browser.get(
            f"{site.url}/accounts/test-op/callback/", params=params, allow_redirects=False, timeout=REQUEST_TIMEOUT
        )
        assert finished.status_code == 302, (finished.status_code, finished.text[:300])
        assert browser.get(f"{site.url}/accounts/session/", timeout=REQUEST_TIMEOUT).json()["authenticated"]
        for page in ("/accounts/login/", "/accounts/profile/", "/accounts/session/", "/"):
            answer = browser.get(f"{site.url}{page}", allow_redirects=False, timeout=REQUEST_TIMEOUT)
            assert answer.status_code < 400, (page, answer.status_code)
        assert flow_cookie_header_bytes(browser) <= pending.MAX_COOKIE_HEADER_BYTES
