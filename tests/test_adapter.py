"""The adapter is where a project customises: docs/customisation.md's examples, run as written."""

from __future__ import annotations

import logging
import re
import sys
import types
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client

from accounts.adapter import DefaultAccountAdapter
from accounts.errors import SignInRefused
from accounts.models import Identity, Provider, ProviderSession, SignInEvent
from tests.conftest import assert_error_page, connect, sign_in, signed_in, signed_in_user, start_login

pytestmark = pytest.mark.django_db
User = get_user_model()

CUSTOMISATION = Path(__file__).resolve().parent.parent / "docs" / "customisation.md"


def documented_example(after: str) -> str:
    """The first ```python block of docs/customisation.md that follows the sentence ``after``."""
    text = CUSTOMISATION.read_text()
    block = re.search(r"```python\n(.*?)```", text[text.index(after) :], re.DOTALL)
    assert block is not None, f"no example after {after!r}"
    return block.group(1)


@pytest.fixture
def documented_adapter(settings):
    """The documented adapter module, importable as ``documented_adapter`` and configured as ACCOUNTS_ADAPTER."""
    module = types.ModuleType("documented_adapter")
    exec(documented_example("A provider that bends the standard"), module.__dict__)  # as a reader would paste it
    sys.modules["documented_adapter"] = module
    settings.ACCOUNTS_ADAPTER = "documented_adapter.Adapter"
    yield module
    del sys.modules["documented_adapter"]


@pytest.fixture
def acme(provider) -> Provider:
    provider.slug = "acme"
    provider.save()
    return provider


def test_a_subclassed_client_adds_its_authorization_parameter(client, acme, documented_adapter):
    params = start_login(client, acme)
    assert params["acme_realm"] == "staff" and params["nonce"] and params["code_challenge_method"] == "S256"


def test_a_subclassed_client_maps_its_claims_and_keeps_every_check(client, op, acme, documented_adapter):
    op.next_user = {k: v for k, v in op.next_user.items() if k != "email"} | {"acme_mail": "alice@acme.example"}
    op.id_token_mutator = lambda header, claims: (header, {**claims, "acme_mail": "alice@acme.example"})
    assert sign_in(client, op, acme).status_code == 302
    assert Identity.objects.get().email == "alice@acme.example"
    op.id_token_mutator = lambda header, claims: (header, {**claims, "nonce": "not-ours"})
    response = sign_in(client.__class__(), op, acme)
    assert response.status_code == 400 and Identity.objects.count() == 1  # the nonce rule still holds
    assert SignInEvent.objects.latest("pk").reason == "ID token nonce claim is not valid (Invalid claim: 'nonce')"


def test_other_providers_keep_the_standard_client(client, op, provider, documented_adapter):
    params = start_login(client, provider)
    assert "acme_realm" not in params


# --- update_user: on every sign-in, saved, able to revoke (the documented groups recipe) ----------


@pytest.fixture
def groups_adapter(settings):
    module = types.ModuleType("documented_groups_adapter")
    exec(documented_example("A recipe that makes the provider's `groups` claim"), module.__dict__)
    sys.modules["documented_groups_adapter"] = module
    settings.ACCOUNTS_ADAPTER = "documented_groups_adapter.GroupsAdapter"
    yield module
    del sys.modules["documented_groups_adapter"]


def sign_in_with_groups(op, provider, groups) -> User:
    op.id_token_mutator = lambda header, claims: (header, {**claims, "groups": groups})
    assert sign_in(Client(), op, provider).status_code == 302
    return User.objects.get(identities__provider=provider)


def test_the_groups_claim_grants_groups_and_staff(op, provider, groups_adapter):
    user = sign_in_with_groups(op, provider, ["staff", "editors", "unmanaged"])
    assert user.is_staff and set(user.groups.values_list("name", flat=True)) == {"staff", "editors"}


def test_a_later_sign_in_revokes_what_the_claim_no_longer_grants(op, provider, groups_adapter):
    user = sign_in_with_groups(op, provider, ["staff", "editors"])
    own = Group.objects.create(name="book-club")  # given here, not by the provider: left alone
    user.groups.add(own)
    user = sign_in_with_groups(op, provider, ["editors"])
    assert not user.is_staff and set(user.groups.values_list("name", flat=True)) == {"editors", "book-club"}
    user = sign_in_with_groups(op, provider, "staff")  # not a list: grants nothing
    assert not user.is_staff and set(user.groups.values_list("name", flat=True)) == {"book-club"}


def test_update_user_runs_inside_the_sign_in_transaction(op, provider, settings):
    """A refusal raised by the hook leaves nothing behind: no user, no identity, no session."""
    settings.ACCOUNTS_ADAPTER = "tests.test_adapter.RefusingOnUpdate"
    response = sign_in(Client(), op, provider)
    assert_error_page(response, 403, "Only reviewed accounts", code="sign_in_refused", reason="not reviewed")
    assert not User.objects.exists() and not Identity.objects.exists()


class RefusingOnUpdate(DefaultAccountAdapter):
    def update_user(self, request, user, claims, *, created):
        raise SignInRefused("account not reviewed", message="Only reviewed accounts can sign in.")


# --- refusing in the project's own words, from any hook -----------------------------------------------


class RefusingIn(DefaultAccountAdapter):
    """Refuses from the one hook named by ``hook``: the person reads ``message``, the log says ``reason``."""

    hook = ""
    message = "Ask the helpdesk to enable your account."

    def refuse_in(self, hook: str) -> None:
        if hook == self.hook:
            raise SignInRefused(f"refused in {hook}", message=self.message)

    def is_sign_in_allowed(self, request, provider, claims):
        self.refuse_in("is_sign_in_allowed")
        return True

    def populate_user(self, request, user, claims, *, email_verified):
        self.refuse_in("populate_user")
        super().populate_user(request, user, claims, email_verified=email_verified)

    def update_user(self, request, user, claims, *, created):
        self.refuse_in("update_user")

    def get_login_redirect_url(self, request, user, *, provider, next_url):
        self.refuse_in("get_login_redirect_url")
        return next_url


#: The hooks a sign-in asks before anything is stored (``get_login_redirect_url`` is asked once it is complete).
BEFORE_STORING = ["is_sign_in_allowed", "populate_user", "update_user"]


@pytest.fixture
def refusing(settings):
    """Makes ``RefusingIn`` the adapter, refusing from the hook it is called with."""

    def refuse_in(hook: str) -> None:
        RefusingIn.hook = hook
        settings.ACCOUNTS_ADAPTER = "tests.test_adapter.RefusingIn"

    yield refuse_in
    RefusingIn.hook = ""


def failure_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "accounts.views" and "sign-in failed" in r.getMessage()]


@pytest.mark.parametrize("hook", [*BEFORE_STORING, "get_login_redirect_url"])
def test_a_refusal_from_any_hook_shows_its_message_and_logs_its_reason(client, op, provider, refusing, hook, caplog):
    refusing(hook)
    with caplog.at_level(logging.WARNING, logger="accounts.views"):
        response = sign_in(client, op, provider)
    assert_error_page(response, 403, RefusingIn.message, code="sign_in_refused", reason=f"refused in {hook}")
    assert failure_lines(caplog) == [f"sign-in failed: provider=test-op code=sign_in_refused reason=refused in {hook}"]
    assert not signed_in(client) and not ProviderSession.objects.exists()
    event = SignInEvent.objects.latest("pk")
    assert (event.outcome, event.code, event.reason) == ("failure", "sign_in_refused", f"refused in {hook}")


@pytest.mark.parametrize("hook", BEFORE_STORING)
def test_a_refusal_before_storing_leaves_no_user_and_no_identity(client, op, provider, refusing, hook):
    refusing(hook)
    sign_in(client, op, provider)
    assert not User.objects.exists() and not Identity.objects.exists()


def test_a_refusal_after_signing_in_ends_the_session_it_started(client, op, provider, settings, refusing):
    """The redirect hook runs once the sign-in is complete: refusing there must not leave anyone signed in."""
    sign_in(client, op, provider)  # a returning user, signed in before
    refusing("get_login_redirect_url")
    browser = Client()
    assert sign_in(browser, op, provider).status_code == 403
    assert not signed_in(browser) and signed_in(client)  # the earlier session is not the adapter's to end
    assert ProviderSession.objects.count() == 1


# --- where to go after a sign-in or a connect ------------------------------------------------------


class Landing(DefaultAccountAdapter):
    """Sends people where ``login_to``/``connect_to`` say, recording what it was asked."""

    login_to: object = "/accounts/session/"
    connect_to: object = "/accounts/session/"
    asked: list = []

    def get_login_redirect_url(self, request, user, *, provider, next_url):
        self.asked.append(("login", request.path, user.get_username(), provider.slug, next_url))
        return self.login_to

    def get_connect_redirect_url(self, request, user, *, provider, next_url):
        self.asked.append(("connect", request.path, user.get_username(), provider.slug))
        return self.connect_to


@pytest.fixture
def landing(settings):
    settings.ACCOUNTS_ADAPTER = "tests.test_adapter.Landing"
    Landing.login_to = Landing.connect_to = "/accounts/session/"
    Landing.asked = []
    yield Landing
    Landing.asked = []


def test_by_default_a_sign_in_goes_to_next_or_login_redirect_url(client, op, provider):
    assert sign_in(client, op, provider, next="/accounts/session/")["Location"] == "/accounts/session/"
    assert sign_in(Client(), op, provider)["Location"] == "/accounts/profile/"


def test_by_default_a_connect_goes_back_to_the_profile(client, op, op2, provider, second):
    sign_in(client, op, provider)
    assert connect(client, op2, second)["Location"] == "/accounts/profile/"


def test_the_adapter_decides_where_a_sign_in_goes(client, op, provider, landing):
    assert sign_in(client, op, provider, next="/accounts/login/?x=1")["Location"] == "/accounts/session/"
    sign_in(Client(), op, provider, next="https://evil.example/")
    # It is told where the person asked to go, already checked, or LOGIN_REDIRECT_URL.
    assert landing.asked == [
        ("login", "/accounts/test-op/callback/", "alice", "test-op", "/accounts/login/?x=1"),
        ("login", "/accounts/test-op/callback/", "alice", "test-op", "/accounts/profile/"),
    ]


def test_the_adapter_decides_where_a_connect_goes(client, op, op2, provider, second, landing):
    sign_in(client, op, provider)
    landing.connect_to = "oidc_signin:session"  # a URL pattern name, as LOGIN_REDIRECT_URL may be
    assert connect(client, op2, second)["Location"] == "/accounts/session/"
    assert landing.asked[-1] == ("connect", "/accounts/second-op/callback/", "alice", "second-op")


@pytest.mark.parametrize(
    "mistake",
    [
        "https://evil.example/",
        "//evil.example/path",
        "/\\evil.example",
        "javascript:alert(1)",
        "no-such-url-name",
        None,
    ],
)
@pytest.mark.parametrize("action", ["login", "connect"])
def test_an_adapter_redirect_off_this_site_is_replaced_and_logged(
    client, op, op2, provider, second, landing, mistake, action, caplog
):
    """A URL the adapter builds from what a visitor sent must not become an open redirect."""
    if action == "connect":
        sign_in(client, op, provider)
        landing.connect_to = mistake
    else:
        landing.login_to = mistake
    with caplog.at_level(logging.WARNING, logger="accounts.views"):
        response = connect(client, op2, second) if action == "connect" else sign_in(client, op, provider)
    assert response.status_code == 302 and response["Location"] == "/accounts/profile/"
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("adapter's redirect after")]
    assert line.endswith(f"is not on this site: {mistake!r}; going to /accounts/profile/ instead")
    assert signed_in(client)


# --- whether a disconnect is allowed ---------------------------------------------------------------


class KeepsTheCompanyLogin(DefaultAccountAdapter):
    """The company's own provider stays connected; others follow the default rule."""

    def is_disconnect_allowed(self, request, identity):
        KeepsTheCompanyLogin.asked = request.path
        if identity.provider.slug == "test-op":
            return False
        if identity.provider.slug == "third-op":
            raise SignInRefused("third-op is audited", message="Ask the helpdesk to disconnect this account.")
        return super().is_disconnect_allowed(request, identity)


class LetsEverythingGo(DefaultAccountAdapter):
    """A site where people also sign in with a passkey this app does not see."""

    def is_disconnect_allowed(self, request, identity):
        return True


@pytest.fixture
def alice_with_two(client, op, op2, provider, second):
    sign_in(client, op, provider)
    connect(client, op2, second)
    return signed_in_user(client)


def disconnect(client, provider_slug: str):
    return client.post(f"/accounts/identities/{Identity.objects.get(provider__slug=provider_slug).pk}/disconnect/")


def disconnect_refusals(caplog) -> list[str]:
    prefix = "disconnect refused: "
    return [r.getMessage().removeprefix(prefix) for r in caplog.records if r.getMessage().startswith(prefix)]


def test_the_adapter_refuses_a_disconnect_with_a_friendly_message(client, alice_with_two, settings, caplog):
    settings.ACCOUNTS_ADAPTER = "tests.test_adapter.KeepsTheCompanyLogin"
    with caplog.at_level(logging.INFO, logger="accounts.views"):
        response = disconnect(client, "test-op")
    assert response.status_code == 302 and response["Location"] == "/accounts/profile/"
    assert disconnect_refusals(caplog) == [
        f"adapter refused disconnecting test-op identity of user {alice_with_two.pk}"
    ]
    assert (
        KeepsTheCompanyLogin.asked
        == f"/accounts/identities/{Identity.objects.get(provider__slug='test-op').pk}/disconnect/"
    )
    assert (
        "This sign-in method cannot be disconnected from your account."
        in client.get("/accounts/profile/").content.decode()
    )
    assert Identity.objects.filter(user=alice_with_two).count() == 2
    disconnect(client, "second-op")  # the default rule for the others: there is another way in
    assert list(Identity.objects.values_list("provider__slug", flat=True)) == ["test-op"]


def test_the_adapter_refuses_a_disconnect_in_its_own_words(client, alice_with_two, settings, caplog, op2):
    Provider.objects.filter(slug="second-op").update(slug="third-op")
    settings.ACCOUNTS_ADAPTER = "tests.test_adapter.KeepsTheCompanyLogin"
    with caplog.at_level(logging.INFO, logger="accounts.views"):
        disconnect(client, "third-op")
    assert disconnect_refusals(caplog) == ["third-op is audited"]
    assert "Ask the helpdesk to disconnect this account." in client.get("/accounts/profile/").content.decode()
    assert Identity.objects.filter(user=alice_with_two).count() == 2


def test_by_default_the_last_way_in_cannot_be_disconnected(client, op, provider, caplog):
    sign_in(client, op, provider)
    with caplog.at_level(logging.INFO, logger="accounts.views"):
        disconnect(client, "test-op")
    assert disconnect_refusals(caplog) == [
        f"user {signed_in_user(client).pk} tried to remove their only sign-in method"
    ]
    assert Identity.objects.exists()


def test_an_adapter_may_let_the_last_identity_go(client, op, provider, settings):
    sign_in(client, op, provider)
    settings.ACCOUNTS_ADAPTER = "tests.test_adapter.LetsEverythingGo"
    disconnect(client, "test-op")
    assert not Identity.objects.exists()


# --- every policy hook receives the request ------------------------------------------------------------


class Recording(DefaultAccountAdapter):
    """Records the path of the request each hook was given."""

    seen: dict = {}

    def is_sign_in_allowed(self, request, provider, claims):
        self.seen["is_sign_in_allowed"] = request.path
        return super().is_sign_in_allowed(request, provider, claims)

    def new_user(self, request):
        self.seen["new_user"] = request.path
        return super().new_user(request)

    def populate_user(self, request, user, claims, *, email_verified):
        self.seen["populate_user"] = request.path
        super().populate_user(request, user, claims, email_verified=email_verified)

    def username_candidates(self, request, claims):
        self.seen["username_candidates"] = request.path
        return super().username_candidates(request, claims)

    def update_user(self, request, user, claims, *, created):
        self.seen["update_user"] = request.path


def test_every_hook_of_a_first_sign_in_receives_the_request(client, op, provider, settings):
    settings.ACCOUNTS_ADAPTER = "tests.test_adapter.Recording"
    Recording.seen = {}
    assert sign_in(client, op, provider).status_code == 302
    callback = "/accounts/test-op/callback/"
    assert Recording.seen == dict.fromkeys(
        ["is_sign_in_allowed", "new_user", "populate_user", "username_candidates", "update_user"], callback
    )


def test_populate_user_receives_the_request_on_a_following_sign_in_too(client, op, provider, settings):
    provider.profile_sync = Provider.ProfileSync.FOLLOW
    provider.save()
    sign_in(client, op, provider)
    settings.ACCOUNTS_ADAPTER = "tests.test_adapter.Recording"
    Recording.seen = {}
    sign_in(Client(), op, provider)
    assert Recording.seen["populate_user"] == "/accounts/test-op/callback/" and "new_user" not in Recording.seen


# --- replacing a failure's answer ---------------------------------------------------------------------


class RedirectingFailures(DefaultAccountAdapter):
    """Sends a failed sign-in to the project's own page, naming the rule that refused."""

    def sign_in_failed_response(self, request, error, *, provider, response):
        from django.http import HttpResponseRedirect

        return HttpResponseRedirect(f"/help/?code={error.code}&provider={provider.slug if provider else ''}")


def test_the_adapter_replaces_a_failed_sign_ins_answer_after_it_is_logged_and_audited(
    client, op, provider, settings, caplog
):
    settings.ACCOUNTS_ADAPTER = "tests.test_adapter.RedirectingFailures"
    op.id_token_mutator = lambda header, claims: (header, {**claims, "aud": "another-client"})
    with caplog.at_level(logging.WARNING, logger="accounts.views"):
        response = sign_in(client, op, provider)
    assert response.status_code == 302
    assert response["Location"] == "/help/?code=token_rejected&provider=test-op"
    assert any("sign-in failed: provider=test-op code=token_rejected" in line for line in caplog.messages)
    assert SignInEvent.objects.get().code == "token_rejected"
    assert not signed_in(client)
