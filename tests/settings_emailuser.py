"""The test settings with a custom user model keyed by email (``tests.emailuser``)."""

from tests.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "tests.emailuser"]  # noqa: F405
AUTH_USER_MODEL = "emailuser.EmailUser"
