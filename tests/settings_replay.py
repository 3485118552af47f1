"""The test settings served by a real process, with an API that refuses replays (``tests.urls_replay``)."""

from tests.settings import *  # noqa: F403

ROOT_URLCONF = "tests.urls_replay"
