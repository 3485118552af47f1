"""A project that mounts the app but not ``django.contrib.admin`` (for tests)."""

from django.urls import include, path

urlpatterns = [path("accounts/", include("accounts.urls"))]
