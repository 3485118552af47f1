from benchhooks import whoami
from django.contrib.auth import get_user_model, login
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.urls import path
from django.views.decorators.http import require_GET

from accounts.api import bearer_token_required, get_bearer
from project.urls import urlpatterns as project_urlpatterns

#: The audience the API rows' tokens carry (``bench/run.py``'s API benchmark).
API_AUDIENCE = "https://api.bench.example"


@require_GET
def floor(request: HttpRequest, username: str) -> HttpResponse:
    """Django's floor under any sign-in on this stack: find a user, ``login()``, save the DB session.

    No provider, no token, no checks, no audit: what every Django sign-in does once a provider is
    done, measured through the same gunicorn, middleware and SQLite as the callbacks.
    """
    user = get_user_model().objects.get(username=username)
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    return HttpResponseRedirect("/")


def _caller(request: HttpRequest) -> JsonResponse:
    bearer = get_bearer(request)
    return JsonResponse({"sub": bearer.subject if bearer else None})


async def _async_caller(request: HttpRequest) -> JsonResponse:
    return _caller(request)


def _drf_view():
    """The same API through Django REST framework and ``accounts.drf``."""
    from rest_framework.response import Response
    from rest_framework.views import APIView

    from accounts.drf import BearerTokenAuthentication

    class Caller(APIView):
        authentication_classes = [BearerTokenAuthentication]
        permission_classes: list = []
        bearer_audience = API_AUDIENCE

        def get(self, request):
            return Response({"sub": request.auth.subject})

    return Caller.as_view()


urlpatterns = [
    path("whoami/", whoami),
    path("floor/<str:username>/", floor),
    # The API rows: the decorator, the middleware (ACCOUNTS_API_PREFIXES in ours_settings), DRF, async.
    path("bench-api/decorator/", bearer_token_required(audience=API_AUDIENCE)(_caller)),
    path("bench-api/mw/", _caller),
    path("bench-api/drf/", _drf_view()),
    path("bench-api/async/", bearer_token_required(audience=API_AUDIENCE)(_async_caller)),
    *project_urlpatterns,
]
