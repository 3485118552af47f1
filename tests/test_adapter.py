"""The adapter is where a project customises: the README's client-subclassing example, run as written."""

from __future__ import annotations

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
from accounts.models import Identity, Provider, SignInEvent
from tests.conftest import assert_error_page, sign_in, start_login

pytestmark = pytest.mark.django_db
User = get_user_model()

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_example(after: str) -> str:
    """The first ```python block of the README that follows the sentence ``after``."""
    text = README.read_text()
    block = re.search(r"```python\n(.*?)```", text[text.index(after) :], re.DOTALL)
    assert block is not None, f"no example after {after!r}"
    return block.group(1)


@pytest.fixture
def readme_adapter(settings):
    """The README's adapter module, importable as ``readme_adapter`` and configured as ACCOUNTS_ADAPTER."""
    module = types.ModuleType("readme_adapter")
    exec(readme_example("A provider that bends the standard"), module.__dict__)  # as a reader would paste it
    sys.modules["readme_adapter"] = module
    settings.ACCOUNTS_ADAPTER = "readme_adapter.Adapter"
    yield module
    del sys.modules["readme_adapter"]


@pytest.fixture
def acme(provider) -> Provider:
    provider.slug = "acme"
    provider.save()
    return provider


def test_a_subclassed_client_adds_its_authorization_parameter(client, acme, readme_adapter):
    params = start_login(client, acme)
    assert params["acme_realm"] == "staff" and params["nonce"] and params["code_challenge_method"] == "S256"


def test_a_subclassed_client_maps_its_claims_and_keeps_every_check(client, op, acme, readme_adapter):
    op.next_user = {k: v for k, v in op.next_user.items() if k != "email"} | {"acme_mail": "alice@acme.example"}
    op.id_token_mutator = lambda header, claims: (header, {**claims, "acme_mail": "alice@acme.example"})
    assert sign_in(client, op, acme).status_code == 302
    assert Identity.objects.get().email == "alice@acme.example"
    op.id_token_mutator = lambda header, claims: (header, {**claims, "nonce": "not-ours"})
    response = sign_in(client.__class__(), op, acme)
    assert response.status_code == 400 and Identity.objects.count() == 1  # the nonce rule still holds
    assert SignInEvent.objects.latest("pk").reason == "ID token nonce claim is not valid (Invalid claim: 'nonce')"


def test_other_providers_keep_the_standard_client(client, op, provider, readme_adapter):
    params = start_login(client, provider)
    assert "acme_realm" not in params


# --- update_user: on every sign-in, saved, able to revoke (the README's groups recipe) ----------


@pytest.fixture
def groups_adapter(settings):
    module = types.ModuleType("readme_groups_adapter")
    exec(readme_example("A recipe that makes the provider's `groups` claim"), module.__dict__)
    sys.modules["readme_groups_adapter"] = module
    settings.ACCOUNTS_ADAPTER = "readme_groups_adapter.GroupsAdapter"
    yield module
    del sys.modules["readme_groups_adapter"]


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
