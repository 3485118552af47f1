"""WSGI entry point of a generated peer project (DJANGO_SETTINGS_MODULE names its settings)."""

from django.core.wsgi import get_wsgi_application

application = get_wsgi_application()
