"""``{% load oidc_signin %}`` and the provider buttons snippet: what a project's own templates build on.

The URLs are checked by following them (a ``next`` full of ``&`` and spaces must come back whole
after a real sign-in), the snippet by rendering it, and docs/templates.md by rendering every
example it shows, read from the file itself.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qs, parse_qsl, urlsplit

import pytest
from django.template import engines
from django.test import RequestFactory

from accounts.models import Provider
from tests.conftest import sign_in

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "templates.md"
APP_TEMPLATES = ROOT / "accounts" / "templates" / "oidc_signin"
SNIPPET = "oidc_signin/includes/provider_buttons.html"
#: A destination with everything a hand-built ``?next=`` gets wrong: ``&``, ``?``, ``=`` and spaces.
AWKWARD_NEXT = "/reports/?year=2026&team=data science"


def render(source: str, context: dict | None = None, request=None) -> str:
    return engines["django"].from_string(source).render(context or {}, request)


@pytest.fixture
def disabled(db) -> Provider:
    """A provider an admin switched off: offered nowhere, and its sign-in URL answers 404."""
    return Provider.objects.create(
        slug="retired-op", name="Retired OP", issuer="https://retired.example", client_id="x", enabled=False
    )


@pytest.fixture
def first_by_order(db) -> Provider:
    """Listed first by its display order, although its name sorts last."""
    return Provider.objects.create(
        slug="zeta-op", name="Zeta OP", issuer="https://zeta.example", client_id="z", display_order=0, preset="github"
    )


# --- the tags -------------------------------------------------------------------------------------------


def test_providers_tag_lists_what_the_login_page_lists(client, provider, second, disabled, first_by_order):
    listed = render("{% load oidc_signin %}{% oidc_providers as ps %}{% for p in ps %}{{ p.slug }} {% endfor %}")
    on_the_login_page = [p.slug for p in client.get("/accounts/login/").context["providers"]]
    assert listed.split() == on_the_login_page == ["test-op", "zeta-op", "second-op"]


def test_providers_tag_leaves_out_a_disabled_provider(provider, disabled):
    listed = render("{% load oidc_signin %}{% oidc_providers as ps %}{% for p in ps %}{{ p.slug }} {% endfor %}")
    assert listed.split() == ["test-op"]


def test_sign_in_url_encodes_next(provider):
    url = render(
        "{% load oidc_signin %}{% oidc_signin_url p next=n as url %}{{ url|safe }}", {"p": provider, "n": AWKWARD_NEXT}
    )
    assert url == "/accounts/test-op/login/?next=%2Freports%2F%3Fyear%3D2026%26team%3Ddata+science"


def test_sign_in_url_without_next_has_no_query(provider):
    assert render("{% load oidc_signin %}{% oidc_signin_url p %}", {"p": provider}) == "/accounts/test-op/login/"
    assert (
        render('{% load oidc_signin %}{% oidc_signin_url p next="" %}', {"p": provider}) == "/accounts/test-op/login/"
    )


def test_sign_in_url_accepts_a_slug():
    assert render('{% load oidc_signin %}{% oidc_signin_url "staff-sso" next="/x/" %}') == (
        "/accounts/staff-sso/login/?next=%2Fx%2F"
    )


def test_next_built_by_the_tag_comes_back_whole_after_signing_in(client, op, provider):
    """The whole point of encoding: the person lands on exactly the page the link named."""
    url = render(
        "{% load oidc_signin %}{% oidc_signin_url p next=n as url %}{{ url|safe }}", {"p": provider, "n": AWKWARD_NEXT}
    )
    started = client.get(url)
    assert started.status_code == 302, started.content[:500]
    callback_params = op.authorize(dict(parse_qsl(urlsplit(started["Location"]).query)))
    landed = urlsplit(client.get(f"/accounts/{provider.slug}/callback/", callback_params)["Location"])
    assert landed.path == "/reports/"
    assert parse_qs(landed.query) == {"year": ["2026"], "team": ["data science"]}


def test_the_url_in_html_is_escaped_for_the_attribute(provider):
    """Printed straight into ``href="..."``, the tag's output is autoescaped like any variable."""
    html = render('{% load oidc_signin %}<a href="{% oidc_signin_url p next=n %}">', {"p": provider, "n": '/a"b'})
    assert html == '<a href="/accounts/test-op/login/?next=%2Fa%22b">'
    quoted = render("{% load oidc_signin %}{% oidc_signin_url p next=n %}", {"p": provider, "n": "/a?x=1&y=2"})
    assert "&" not in quoted.replace("&amp;", "")  # no raw ampersand, whatever the encoding


def test_connect_url_is_the_connect_views_and_encodes_next(second):
    assert render("{% load oidc_signin %}{% oidc_connect_url p %}", {"p": second}) == "/accounts/second-op/connect/"
    assert render("{% load oidc_signin %}{% oidc_connect_url p next=n %}", {"p": second, "n": "/a b&c"}) == (
        "/accounts/second-op/connect/?next=%2Fa+b%26c"
    )


def test_connect_url_is_where_the_profile_page_posts(client, op, provider, second):
    sign_in(client, op, provider)
    action = render("{% load oidc_signin %}{% oidc_connect_url p %}", {"p": second})
    assert f'action="{action}"' in client.get("/accounts/profile/").content.decode()
    response = client.post(action)
    assert response.status_code == 302 and response["Location"].startswith(second.issuer)


# --- the snippet ---------------------------------------------------------------------------------------


def test_snippet_lists_the_enabled_providers_with_logos_and_next(provider, second, disabled):
    html = render(f'{{% include "{SNIPPET}" with next=n %}}', {"n": AWKWARD_NEXT})
    hrefs = re.findall(r'href="([^"]+)"', html)
    encoded = "next=%2Freports%2F%3Fyear%3D2026%26team%3Ddata+science"
    assert hrefs == [f"/accounts/test-op/login/?{encoded}", f"/accounts/second-op/login/?{encoded}"]
    assert "Continue with Test OP" in html and "Continue with Second OP" in html
    assert "Retired OP" not in html and "retired-op" not in html
    assert html.count('<span class="provider-logo" aria-hidden="true"><svg') == 2


def test_snippet_shows_only_the_providers_it_is_given(provider, second):
    html = render(f'{{% include "{SNIPPET}" with providers=only %}}', {"only": [second]})
    assert re.findall(r'href="([^"]+)"', html) == ["/accounts/second-op/login/"]


def test_snippet_connect_buttons_post_with_the_csrf_token(second):
    request = RequestFactory().get("/accounts/profile/")
    html = render(
        f'{{% include "{SNIPPET}" with providers=ps connect=True labelledby="h" %}}', {"ps": [second]}, request
    )
    assert '<ul class="providers" aria-labelledby="h">' in html
    assert '<form method="post" action="/accounts/second-op/connect/">' in html
    assert 'name="csrfmiddlewaretoken"' in html and "Connect Second OP" in html
    assert "<a " not in html


def test_the_apps_own_pages_use_the_snippet(client, op, provider, second):
    """One markup: the login page's buttons and the profile page's connect buttons are the snippet's."""
    login = client.get("/accounts/login/")
    assert SNIPPET in [t.name for t in login.templates]
    sign_in(client, op, provider)
    profile = client.get("/accounts/profile/")
    assert SNIPPET in [t.name for t in profile.templates]
    assert 'action="/accounts/second-op/connect/"' in profile.content.decode()
    for page in ("login.html", "profile.html"):
        assert "provider-button" not in (APP_TEMPLATES / page).read_text(), f"{page} repeats the snippet's markup"


# --- docs/templates.md: every example renders as the text says --------------------------------------


def doc_examples() -> dict[str, str]:
    """The ```django blocks of docs/templates.md, by the name in their first line ``{# example: name #}``."""
    examples = {}
    for block in re.findall(r"^```django\n(.*?)^```$", DOCS.read_text(), flags=re.M | re.S):
        name = re.match(r"\{# example: ([\w-]+) #\}\n", block)
        assert name, f"a django block without an example name: {block[:80]!r}"
        examples[name.group(1)] = block
    return examples


def python_examples() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", DOCS.read_text(), flags=re.M | re.S)


def test_every_example_in_the_docs_is_tested():
    assert set(doc_examples()) == {
        "own-login-page", "one-provider-link", "connect-form", "buttons-snippet", "connect-snippet", "base-override",
    }  # fmt: skip


def test_doc_own_login_page(provider, second, disabled):
    request = RequestFactory().get("/reports/", {"year": "2026", "team": "data science"})
    html = render(doc_examples()["own-login-page"], request=request)
    hrefs = re.findall(r'href="([^"]+)"', html)
    encoded = "next=%2Freports%2F%3Fyear%3D2026%26team%3Ddata%2Bscience"  # get_full_path keeps the "+"
    assert hrefs == [f"/accounts/test-op/login/?{encoded}", f"/accounts/second-op/login/?{encoded}"]
    assert "Retired OP" not in html


def test_doc_own_login_page_without_providers(db):
    html = render(doc_examples()["own-login-page"], request=RequestFactory().get("/"))
    assert "No sign-in is available right now." in html


def test_doc_one_provider_link():
    html = render(doc_examples()["one-provider-link"])
    assert 'href="/accounts/staff-sso/login/?next=%2Freports%2F%3Fyear%3D2026%26team%3Ddata+science"' in html


def test_doc_connect_form(rf):
    html = render(doc_examples()["connect-form"], request=rf.get("/"))
    assert '<form method="post" action="/accounts/github/connect/">' in html
    assert 'name="csrfmiddlewaretoken"' in html


def test_doc_buttons_snippet(provider, disabled):
    html = render(doc_examples()["buttons-snippet"])
    assert 'href="/static/oidc_signin/oidc_signin.css"' in html
    assert '<ul class="providers" aria-labelledby="sign-in-heading">' in html
    assert re.findall(r'href="(/accounts/[^"]+)"', html) == ["/accounts/test-op/login/?next=%2Freports%2F"]


def test_doc_connect_snippet(rf, second):
    html = render(doc_examples()["connect-snippet"], {"connectable": [second]}, rf.get("/"))
    assert '<form method="post" action="/accounts/second-op/connect/">' in html and "Connect Second OP" in html


def test_doc_base_override_brands_the_apps_pages(client, settings, tmp_path, provider):
    """Saved as the project's templates/oidc_signin/base.html, it changes the app's pages and keeps the rest."""
    (tmp_path / "oidc_signin").mkdir()
    (tmp_path / "oidc_signin" / "base.html").write_text(doc_examples()["base-override"])
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [tmp_path]}]
    page = client.get("/accounts/login/").content.decode()
    assert "Example Corp intranet" in page and "Questions? Ask the IT desk." in page
    assert "Continue with Test OP" in page  # the app's own content still renders inside the layout
    assert "Sign-in by OpenID Connect" not in page  # the app's footer was replaced


def test_doc_settings_put_locale_middleware_where_django_says():
    (snippet,) = python_examples()
    namespace: dict = {}
    exec(snippet, namespace)  # the documentation's own settings lines
    middleware = namespace["MIDDLEWARE"]
    locale = middleware.index("django.middleware.locale.LocaleMiddleware")
    assert middleware.index("django.contrib.sessions.middleware.SessionMiddleware") < locale
    assert locale < middleware.index("django.middleware.common.CommonMiddleware")
    assert ("de", "Deutsch") in namespace["LANGUAGES"]
