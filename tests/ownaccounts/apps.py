from django.apps import AppConfig


class OwnAccountsConfig(AppConfig):
    name = "tests.ownaccounts"
    label = "accounts"
    default_auto_field = "django.db.models.BigAutoField"
