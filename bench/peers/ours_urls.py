from benchhooks import whoami
from django.urls import path

from project.urls import urlpatterns as project_urlpatterns

urlpatterns = [path("whoami/", whoami), *project_urlpatterns]
