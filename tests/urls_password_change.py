"""The demo's URLs plus what a project's own password change does to the session (for tests)."""

from django.contrib.auth import update_session_auth_hash
from django.http import HttpResponse
from django.urls import path
from django.views.decorators.http import require_POST

from project.urls import urlpatterns as project_urlpatterns


@require_POST
def change_password(request):
    """What Django's PasswordChangeView does on success: new password, session kept under a new key."""
    request.user.set_password("a new long password")
    request.user.save()
    update_session_auth_hash(request, request.user)
    return HttpResponse("changed")


urlpatterns = [*project_urlpatterns, path("password-change/", change_password)]
