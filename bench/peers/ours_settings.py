"""Our demo project's own settings (``project.settings``, from the same environment as ``make serve``).

Only two additions, the same as every peer gets: the off-by-default query counter as the
outermost middleware, and the ``/whoami/`` view next to the project's URLs.
"""

from project.settings import *  # noqa: F403
from project.settings import MIDDLEWARE

MIDDLEWARE = ["benchhooks.QueryCountMiddleware", *MIDDLEWARE]
ROOT_URLCONF = "ours_urls"
