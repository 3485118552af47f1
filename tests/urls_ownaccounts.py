from django.urls import include, path

urlpatterns = [
    path("accounts/", include("tests.ownaccounts.urls")),
    path("signin/", include("accounts.urls")),
]
