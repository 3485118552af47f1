"""A custom user model with fields of its own that it requires: what the app cannot fill by itself.

``display_name`` (text, neither blank nor defaulted) and ``organisation`` (a foreign key that may
not be null) are the kind of fields a project adds; only the project's adapter knows where they
come from (``tests.extrauser.adapter``).
"""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.db import models


class Organisation(models.Model):
    name = models.CharField(max_length=100, unique=True)

    def __str__(self) -> str:
        return self.name


class ExtraUserManager(BaseUserManager):
    def create_user(self, username: str, password: str | None = None, **extra):
        user = self.model(username=username, **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, username: str, password: str | None = None, **extra):
        return self.create_user(username, password, is_staff=True, is_superuser=True, **extra)


class ExtraUser(AbstractBaseUser, PermissionsMixin):
    username = models.CharField(max_length=150, unique=True)
    email = models.EmailField(blank=True)
    display_name = models.CharField(max_length=100)
    organisation = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="members")
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False)

    objects = ExtraUserManager()

    USERNAME_FIELD = "username"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS = ["display_name", "organisation"]
