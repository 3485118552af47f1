"""Fixtures for the dev IdP: a set-up IdP on the test client's host, and the steps of a code flow."""

from __future__ import annotations

import base64
import re
import secrets
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from django.test import Client as DjangoClient

from devidp.bootstrap import run_setup
from devidp.models import Client, DevUser

#: Authlib serves plain http only to loopback hosts (as RFC 8252 allows), so not to "testserver".
HOST = "localhost"
BASE = f"http://{HOST}"
REDIRECT_URI = f"{BASE}/accounts/local/callback/"


@pytest.fixture
def client(settings) -> DjangoClient:
    """pytest-django's ``client``, but talking to ``localhost``."""
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, HOST]
    return DjangoClient(HTTP_HOST=HOST)


@pytest.fixture
def idp(db) -> Client:
    """The dev IdP as ``devidp setup`` leaves it, for the Django test client's host."""
    return run_setup(BASE).client


@pytest.fixture
def alice(idp) -> DevUser:
    return DevUser.objects.get(email="alice@example.com")


@pytest.fixture
def bob(idp) -> DevUser:
    return DevUser.objects.get(email="bob@example.com")


@dataclass
class AuthRequest:
    """One authorization request's parameters and the secrets the client keeps for the token request."""

    params: dict[str, str]
    code_verifier: str

    @property
    def url(self) -> str:
        return "/devidp/authorize?" + urlencode(self.params)


def auth_request(client_row: Client, **overrides: str | None) -> AuthRequest:
    """A valid authorization request for ``client_row``; pass ``name=None`` to drop a parameter."""
    verifier = secrets.token_urlsafe(48)
    params = {
        "response_type": "code",
        "client_id": client_row.client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": "openid email profile",
        "state": secrets.token_urlsafe(16),
        "nonce": secrets.token_urlsafe(16),
        "code_challenge": create_s256_code_challenge(verifier),
        "code_challenge_method": "S256",
    }
    params.update(overrides)
    return AuthRequest(params={k: v for k, v in params.items() if v is not None}, code_verifier=verifier)


def form_token(html: str) -> str:
    """The dev IdP's own form token (``devidp.formtoken``), which stands in for Django's CSRF token."""
    return re.search(r'name="devidp_form_token" value="([^"]+)"', html).group(1)


def pick_user(http, request: AuthRequest, user: DevUser):
    """Show the sign-in page, then press the user's button; returns the POST's response."""
    page = http.get(request.url)
    assert page.status_code == 200, page.content
    return http.post(request.url, {"devidp_form_token": form_token(page.content.decode()), "user": str(user.pk)})


def callback_params(response) -> dict[str, str]:
    assert response.status_code == 302, response.content
    location = urlsplit(response["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT_URI
    return dict(parse_qsl(location.query))


def basic_auth(client_row: Client) -> str:
    raw = f"{client_row.client_id}:{client_row.client_secret}".encode()
    return "Basic " + base64.b64encode(raw).decode()


def exchange(http, client_row: Client, request: AuthRequest, code: str, **extra):
    """POST the token request with client_secret_basic; returns the response."""
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": request.params["redirect_uri"],
        "code_verifier": request.code_verifier,
        **extra,
    }
    return http.post("/devidp/token", data, HTTP_AUTHORIZATION=basic_auth(client_row))


def code_flow_at_devidp(http, client_row: Client, user: DevUser) -> tuple[AuthRequest, dict]:
    """Drive the dev IdP's code flow for ``user``, as a relying party would (without ``accounts``).

    The whole front and back channel; returns the request and the token response.
    """
    request = auth_request(client_row)
    code = callback_params(pick_user(http, request, user))["code"]
    response = exchange(http, client_row, request, code)
    assert response.status_code == 200, response.content
    return request, response.json()
