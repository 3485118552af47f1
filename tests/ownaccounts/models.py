from django.conf import settings
from django.db import models


class Profile(models.Model):
    """The project's own per-user data, in the table ``accounts_profile``."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    nickname = models.CharField(max_length=50)

    def __str__(self) -> str:
        return self.nickname
