from benchhooks import whoami
from django.urls import include, path

urlpatterns = [
    path("whoami/", whoami),
    path("oidc/", include("mozilla_django_oidc.urls")),
]
