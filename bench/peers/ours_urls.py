from benchhooks import whoami
from django.contrib.auth import get_user_model, login
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path
from django.views.decorators.http import require_GET

from project.urls import urlpatterns as project_urlpatterns


@require_GET
def floor(request: HttpRequest, username: str) -> HttpResponse:
    """Django's floor under any sign-in on this stack: find a user, ``login()``, save the DB session.

    No provider, no token, no checks, no audit: what every Django sign-in does once a provider is
    done, measured through the same gunicorn, middleware and SQLite as the callbacks.
    """
    user = get_user_model().objects.get(username=username)
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    return HttpResponseRedirect("/")


urlpatterns = [path("whoami/", whoami), path("floor/<str:username>/", floor), *project_urlpatterns]
