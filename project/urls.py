"""Top-level URLs: the admin, the accounts app, the demo API and (in development only) the local identity provider."""

from django.apps import apps
from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from project import api_views

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="oidc_signin:login", permanent=False), name="home"),
    path("admin/", admin.site.urls),
    path("accounts/", include("accounts.urls")),
    # The demo API (docs/api.md): bearer access tokens from any enabled provider.
    path("api/whoami/", api_views.whoami, name="api-whoami"),
    path("api/reports/", api_views.reports, name="api-reports"),
    path("api/async/whoami/", api_views.async_whoami, name="api-async-whoami"),
]

if apps.is_installed("devidp"):
    urlpatterns.append(path("devidp/", include("devidp.urls")))
