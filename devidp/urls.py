"""Mounted at /devidp/ by project/urls.py, which makes the issuer ``<scheme>://<host>/devidp``."""

from django.urls import path

from . import gsi, views

app_name = "devidp"

urlpatterns = [
    path(".well-known/openid-configuration", views.discovery, name="discovery"),
    path("jwks", views.jwks, name="jwks"),
    path("authorize", views.authorize, name="authorize"),
    path("token", views.token, name="token"),
    path("userinfo", views.userinfo, name="userinfo"),
    path("logout", views.logout, name="logout"),
    path("gsi/client.js", gsi.client_js, name="gsi_client_js"),
    path("gsi/post.js", gsi.post_js, name="gsi_post_js"),
    path("gsi/select", gsi.select, name="gsi_select"),
]
