from django.apps import AppConfig


class DevIdpConfig(AppConfig):
    name = "devidp"
    verbose_name = "Local dev identity provider"
    default_auto_field = "django.db.models.BigAutoField"
