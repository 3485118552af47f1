from django.urls import path

from . import views

app_name = "oidc_signin"

urlpatterns = [
    path("login/", views.login_page, name="login"),
    path("logout/", views.logout, name="logout"),
    path("profile/", views.profile, name="profile"),
    path("session/", views.session_info, name="session"),
    path("jwks.json", views.jwks, name="jwks"),
    path("<slug:slug>/login/", views.start, name="start"),
    path("<slug:slug>/callback/", views.callback, name="callback"),
    path("<slug:slug>/connect/", views.connect, name="connect"),
    path("<slug:slug>/credential/", views.credential, name="credential"),
    path("<slug:slug>/token/", views.app_token, name="token"),
    path("<slug:slug>/refresh-profile/", views.refresh_profile, name="refresh_profile"),
    path("<slug:slug>/reconnect/", views.reconnect, name="reconnect"),
    path("<slug:slug>/backchannel-logout/", views.backchannel_logout, name="backchannel_logout"),
    path("identities/<int:identity_id>/disconnect/", views.disconnect, name="disconnect"),
]
