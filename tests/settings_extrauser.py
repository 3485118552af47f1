"""The test settings with a custom user model that requires fields of its own (``tests.extrauser``).

``TESTS_ACCOUNTS_ADAPTER`` picks the adapter, so one test can run the site with an adapter that
fills those fields and another with one that forgets to.
"""

import os

from tests.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "tests.extrauser"]  # noqa: F405
AUTH_USER_MODEL = "extrauser.ExtraUser"
ACCOUNTS_ADAPTER = os.environ.get("TESTS_ACCOUNTS_ADAPTER", "tests.extrauser.adapter.ClaimsAdapter")
