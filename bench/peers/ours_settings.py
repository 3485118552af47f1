"""Our demo project's own settings (``project.settings``, from the same environment as ``make serve``).

Only two additions, the same as every peer gets: the off-by-default query counter as the
outermost middleware, and the ``/whoami/`` view next to the project's URLs. For the API rows,
``BearerTokenMiddleware`` protects ``/bench-api/mw/`` (other paths pass it untouched).
"""

from project.settings import *  # noqa: F403
from project.settings import MIDDLEWARE

MIDDLEWARE = ["benchhooks.QueryCountMiddleware", *MIDDLEWARE, "accounts.api.BearerTokenMiddleware"]
ROOT_URLCONF = "ours_urls"
ACCOUNTS_API_PREFIXES = {"/bench-api/mw/": {"audience": "https://api.bench.example"}}
