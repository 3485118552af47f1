"""Top-level URLs: the admin, the accounts app and (in development only) the local identity provider."""

from django.apps import apps
from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="oidc_signin:login", permanent=False), name="home"),
    path("admin/", admin.site.urls),
    path("accounts/", include("accounts.urls")),
]

if apps.is_installed("devidp"):
    urlpatterns.append(path("devidp/", include("devidp.urls")))
