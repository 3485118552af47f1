"""The dev IdP's admin: a view-only staff member can read no client secret, private key or token back."""

from __future__ import annotations

import json
import secrets
from datetime import timedelta

import pytest
from django.utils import timezone

from devidp.models import AuthorizationCode, SigningKey, Token
from tests.conftest import assert_guess_refused_alike, encodings, staff_client

pytestmark = pytest.mark.django_db

NOT_BASE64URL = "!"  # a guess no generated secret, key or token can start with


@pytest.fixture
def issued(idp, alice):
    """An outstanding code and access token, so guesses through relations have rows to match."""
    AuthorizationCode.objects.create(
        code="code-" + secrets.token_urlsafe(16),
        client=idp,
        user=alice,
        auth_time=0,
        expires_at=timezone.now() + timedelta(minutes=1),
    )
    return Token.objects.create(access_token="tok-" + secrets.token_urlsafe(16), client=idp, user=alice, expires_in=60)


def private_d() -> str:
    return SigningKey.objects.get(alg="RS256", active=True).private_jwk["d"]


GUESSES = [
    ("client", "client_secret__startswith", lambda idp: idp.client_secret[:1]),
    ("client", "client_secret__regex", lambda idp: f"^{idp.client_secret[:1]}"),
    ("client", "client_secret", lambda idp: idp.client_secret),
    ("client", "token__access_token__startswith", lambda idp: "tok-"),
    ("client", "authorizationcode__code__startswith", lambda idp: "code-"),
    ("signingkey", "private_jwk__d__startswith", lambda idp: private_d()[:1]),
    ("signingkey", "private_jwk__d", lambda idp: private_d()),
    ("signingkey", "private_jwk__icontains", lambda idp: private_d()[:8]),
    ("devuser", "token__access_token__startswith", lambda idp: "tok-"),
    ("devuser", "token__client__client_secret__startswith", lambda idp: idp.client_secret[:1]),
    ("devuser", "authorizationcode__client__client_secret__startswith", lambda idp: idp.client_secret[:1]),
]


@pytest.mark.parametrize(("model", "lookup", "right"), GUESSES, ids=[f"{g[0]}-{g[1]}" for g in GUESSES])
def test_devidp_changelists_refuse_lookups_on_secrets(django_user_model, caplog, idp, issued, model, lookup, right):
    client = staff_client(django_user_model, f"view_{model}")
    assert_guess_refused_alike(client, caplog, f"/admin/devidp/{model}/", lookup, right(idp), NOT_BASE64URL)


def test_view_only_client_page_renders_read_only_without_the_secret(django_user_model, idp):
    client = staff_client(django_user_model, "view_client")
    response = client.get(f"/admin/devidp/client/{idp.pk}/change/")
    assert response.status_code == 200
    page = response.content.decode()
    assert not [form for form in encodings(idp.client_secret) if form in page]
    assert "Secret set" in page and idp.client_id in page


def test_view_only_signing_key_page_shows_no_private_key_material(django_user_model, idp):
    key = SigningKey.objects.get(alg="RS256", active=True)
    client = staff_client(django_user_model, "view_signingkey")
    response = client.get(f"/admin/devidp/signingkey/{key.pk}/change/")
    assert response.status_code == 200
    page = response.content.decode()
    assert key.kid in page
    assert not [name for name in ("d", "p", "q", "dp", "dq", "qi") if key.private_jwk[name] in page]


def test_the_client_change_page_never_shows_the_secret_and_blank_keeps_it(admin_client, idp):
    url = f"/admin/devidp/client/{idp.pk}/change/"
    page = admin_client.get(url).content.decode()
    assert 'type="password"' in page
    assert not [form for form in encodings(idp.client_secret) if form in page]

    data = {
        "client_id": idp.client_id,
        "client_name": idp.client_name,
        "client_secret": "",
        "redirect_uris": json.dumps(idp.redirect_uris),
        "post_logout_redirect_uris": json.dumps(idp.post_logout_redirect_uris),
        "scope": idp.scope,
        "token_endpoint_auth_method": idp.token_endpoint_auth_method,
        "id_token_signed_response_alg": idp.id_token_signed_response_alg,
    }
    before = idp.client_secret
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:3000]
    idp.refresh_from_db()
    assert idp.client_secret == before
