from benchhooks import whoami
from django.urls import include, path

urlpatterns = [
    path("whoami/", whoami),
    path("accounts/", include("allauth.urls")),
]
