"""Bearer tokens in front of ``async def`` views: the decorator and the middleware under ASGI.

In-process (Django's ``AsyncClient``) for the rules, then a real server: gunicorn with uvicorn
workers serving ``project.asgi``, as ``ASGI=1 make serve`` does, hit by parallel requests while
the provider rotates its key. The checks read the database and may fetch keys, so they must run
off the event loop: a ticker on the loop shows it keeps running while a key fetch is held up.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from asgiref.sync import async_to_sync
from django.http import HttpRequest, JsonResponse
from django.test import AsyncClient
from django.urls import include, path

from accounts.api import bearer_token_required, get_bearer
from accounts.oidc import discovery
from tests.sites import SiteProcess
from tests.test_api import AUDIENCE, access_token, alice, machine_token

__all__ = ["alice"]  # the fixture, shared with tests/test_api.py

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.test_api_async"), pytest.mark.usefixtures("discovered")]


async def caller(request: HttpRequest) -> JsonResponse:
    bearer = get_bearer(request)
    assert bearer is not None
    user = await request.auser()
    return JsonResponse({"subject": bearer.subject, "machine": bearer.is_machine, "user": user.pk})


async def ping(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})


urlpatterns = [
    path("accounts/", include("accounts.urls")),
    path("api/async/", bearer_token_required(audience=AUDIENCE, scopes=["orders:read"])(caller)),
    path("mw/async/", caller),
    path("ping/", ping),
]


def get(url: str, token: str | None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return async_to_sync(AsyncClient().get)(url, headers=headers)


def test_the_decorator_protects_an_async_view(op, alice):
    response = get("/api/async/", access_token(op))
    assert response.status_code == 200, response.content
    assert response.json() == {"subject": "user-1", "machine": False, "user": alice.pk}


def test_the_decorator_refuses_for_an_async_view_as_for_a_sync_one(op, alice, caplog):
    assert get("/api/async/", None).status_code == 401
    response = get("/api/async/", access_token(op, scope="openid"))
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response["WWW-Authenticate"]


def test_the_decorator_keeps_an_async_view_async(op):
    view = bearer_token_required(audience=AUDIENCE)(caller)
    assert asyncio.iscoroutinefunction(view)


def test_the_middleware_protects_async_views(op, alice, settings):
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "accounts.api.BearerTokenMiddleware"]
    settings.ACCOUNTS_API_PREFIXES = {"/mw/": {"audience": AUDIENCE}}
    assert get("/mw/async/", None).status_code == 401
    response = get("/mw/async/", access_token(op))
    assert response.status_code == 200, response.content
    assert response.json()["user"] == alice.pk


def test_a_key_fetch_does_not_block_the_event_loop(op, provider):
    """The provider takes 0.6 s to serve its keys: the loop ticks on meanwhile."""
    op.faults["/jwks"] = {"delay": 0.6}
    discovery.forget_in_process()
    token = machine_token(op, scope="orders:read")
    gaps: list[float] = []

    async def scenario() -> int:
        done = asyncio.Event()

        async def ticker() -> None:
            last = time.monotonic()
            while not done.is_set():
                await asyncio.sleep(0.01)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        ticking = asyncio.ensure_future(ticker())
        response = await AsyncClient().get("/api/async/", headers={"Authorization": f"Bearer {token}"})
        done.set()
        await ticking
        return response.status_code

    started = time.monotonic()
    assert async_to_sync(scenario)() == 200
    assert time.monotonic() - started >= 0.6  # the fetch really was held up
    assert op.hits["/jwks"] == 1
    assert max(gaps) < 0.3, max(gaps)  # never stalled for the fetch


def test_an_async_view_under_a_real_asgi_server_through_a_key_rotation(tmp_path, op):
    """gunicorn + uvicorn worker, project.asgi: 12 parallel calls with tokens of a key just rotated in."""
    with SiteProcess(tmp_path, gunicorn_workers=1, asgi=True) as site:
        site.add_provider("test-op", op)
        # A sign-in brings the discovery document and the keys in (bearer requests never fetch discovery).
        assert site.finish_sign_in(site.start_sign_in(op, "test-op"))[0] == 302, site.log()[-2000:]
        url = f"{site.url}/api/async/whoami/"

        def call(token: str) -> int:
            return requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=30).status_code

        assert call(machine_token(op, aud="demo-api")) == 200, site.log()[-2000:]
        op.rotate("RSA")
        op.faults["/jwks"] = {"delay": 0.3}  # the refetch takes a while: every call arrives during it
        before = op.hits["/jwks"]
        fresh = [machine_token(op, aud="demo-api") for _ in range(12)]
        with ThreadPoolExecutor(max_workers=12) as pool:
            statuses = list(pool.map(call, fresh))
        assert statuses == [200] * 12, (statuses, site.log()[-2000:])
        assert op.hits["/jwks"] - before == 1  # single-flight: one refetch for the twelve
        assert call("not-a-token") == 401
