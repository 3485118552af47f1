from benchhooks import whoami
from django.urls import path
from oidc_auth.authentication import JSONWebTokenAuthentication
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView


class Caller(APIView):
    authentication_classes = [JSONWebTokenAuthentication]
    permission_classes = [IsAuthenticated]

    def get(self, request):
        return Response({"sub": request.user.get_username()})


urlpatterns = [path("whoami/", whoami), path("bench-api/drf/", Caller.as_view())]
