"""Failure types: what they put in a log line can never become two log lines."""

from __future__ import annotations

import pytest

from accounts.errors import MAX_REASON_LENGTH, SignInError, TokenRejected, printable


@pytest.mark.parametrize(
    ("sent", "logged"),
    [
        ("alg RS256\nERROR forged line", "alg RS256\\x0aERROR forged line"),
        ("carriage\rreturn", "carriage\\x0dreturn"),
        ("ansi \x1b[31mred", "ansi \\x1b[31mred"),
        ("line\u2028separator", "line\\u2028separator"),
        ("bidi \u202eoverride", "bidi \\u202eoverride"),
        ("nul\x00byte", "nul\\x00byte"),
        ("no\u00a0break space", "no break space"),
    ],
)
def test_reasons_escape_what_would_forge_or_hide_a_log_line(sent, logged):
    assert SignInError(sent).reason == logged
    assert str(TokenRejected(sent)) == logged


def test_printable_text_is_kept_as_it_is():
    assert SignInError("sub 'ålice' from https://idp.example ✓").reason == "sub 'ålice' from https://idp.example ✓"


def test_reasons_are_bounded_even_when_escaping_makes_them_longer():
    assert len(SignInError("\n" * 10_000).reason) == MAX_REASON_LENGTH
    assert len(printable("x" * 10_000)) == MAX_REASON_LENGTH


# --- the provider's error= answer: a heading that matches it -------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("error", "status", "code", "heading", "not_heading"),
    [
        ("server_error", 502, "provider_error", "The provider had a problem", "cancelled"),
        ("temporarily_unavailable", 502, "provider_error", "The provider had a problem", "cancelled"),
        ("access_denied", 403, "provider_denied", "Sign-in was cancelled or refused", "had a problem"),
        ("login_required", 403, "provider_denied", "Sign-in was cancelled or refused", "had a problem"),
    ],
)
def test_the_error_page_heading_matches_the_providers_error_code(
    client, op, provider, error, status, code, heading, not_heading
):
    from tests.conftest import assert_error_page, start_login

    params = start_login(client, provider)
    response = client.get(f"/accounts/{provider.slug}/callback/", {"state": params["state"], "error": error})
    assert_error_page(response, status, code=code, reason=f"provider answered error='{error}'")
    page = response.content.decode()
    h1 = page[page.index('<h1 id="error-title">') : page.index("</h1>")]
    assert heading in h1 and not_heading not in h1
    assert not_heading not in page[page.index("<title>") : page.index("</title>")]
