"""The demo's URLs plus an API that refuses replays, for a real server's parallel replays (tests/test_replay.py)."""

from django.http import JsonResponse
from django.urls import path

from accounts.api import bearer_token_required
from project.urls import urlpatterns as project_urlpatterns

#: The audience the API accepts (``tests.test_api.AUDIENCE``; not imported: a server loads this module).
AUDIENCE = "https://api.example.test"


@bearer_token_required(audience=AUDIENCE, refuse_replay=True)
def once(request):
    return JsonResponse({"user": request.user.pk})


urlpatterns = [*project_urlpatterns, path("api/once/", once)]
