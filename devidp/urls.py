"""Mounted at /devidp/ by project/urls.py, which makes the issuer ``<scheme>://<host>/devidp``."""

from django.urls import path

from . import views

app_name = "devidp"

urlpatterns = [
    path(".well-known/openid-configuration", views.discovery, name="discovery"),
    path("jwks", views.jwks, name="jwks"),
    path("authorize", views.authorize, name="authorize"),
    path("token", views.token, name="token"),
    path("userinfo", views.userinfo, name="userinfo"),
    path("logout", views.logout, name="logout"),
]
