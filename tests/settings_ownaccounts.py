"""The test settings for a project with its own app labelled ``accounts`` (``tests.ownaccounts``).

Ours is labelled ``oidc_signin``, so both install side by side; the project's own URLs keep the
``accounts/`` prefix and namespace, and ours are mounted at ``signin/``.
"""

from tests.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "tests.ownaccounts"]  # noqa: F405
ROOT_URLCONF = "tests.urls_ownaccounts"
LOGIN_URL = "oidc_signin:login"
LOGIN_REDIRECT_URL = "oidc_signin:profile"
