"""Settings are typed attributes of ``conf``: one name each, read when used, a typo fails loudly."""

from __future__ import annotations

import pytest

from accounts.conf import AppSettings, conf


def test_a_setting_reads_its_accounts_name_when_used(settings):
    assert conf.OIDC_FLOW_TTL == 600
    settings.ACCOUNTS_OIDC_FLOW_TTL = 30
    assert conf.OIDC_FLOW_TTL == 30


def test_a_name_that_is_not_a_setting_fails_at_once():
    """The former lookup tried two prefixes and returned Any: ``conf.FLOW_TTL`` quietly worked."""
    with pytest.raises(AttributeError, match="has no attribute 'FLOW_TTL'"):
        conf.FLOW_TTL
    with pytest.raises(AttributeError, match="has no attribute 'OIDC_FLOWTTL'"):
        conf.OIDC_FLOWTTL


def test_every_setting_has_one_name_with_the_accounts_prefix():
    names = [setting.name for setting in AppSettings.all()]
    assert len(names) == len(set(names)) and all(name.startswith("ACCOUNTS_") for name in names)
    assert "ACCOUNTS_OIDC_CLOCK_LEEWAY" in names and "ACCOUNTS_ADAPTER" in names


def test_every_default_passes_its_own_check():
    for setting in AppSettings.all():
        assert setting.valid(setting.default), setting.name


def test_former_refetch_interval_setting_still_sets_the_untrusted_interval(settings):
    settings.ACCOUNTS_OIDC_JWKS_REFETCH_INTERVAL = 300
    assert conf.OIDC_JWKS_UNTRUSTED_REFETCH_INTERVAL == 300
    settings.ACCOUNTS_OIDC_JWKS_UNTRUSTED_REFETCH_INTERVAL = 120  # the current name wins
    assert conf.OIDC_JWKS_UNTRUSTED_REFETCH_INTERVAL == 120
    assert conf.OIDC_JWKS_REFETCH_COOLDOWN == 2.0
