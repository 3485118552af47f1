from django.http import JsonResponse
from django.urls import path, reverse

app_name = "accounts"


def home(request):
    """The project's own page under its own namespace, pointing at ours."""
    return JsonResponse({"own": reverse("accounts:home"), "sign_in": reverse("oidc_signin:login")})


urlpatterns = [path("", home, name="home")]
