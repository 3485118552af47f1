"""The "Someone else" form of the sign-in page: make up a test user on the spot."""

from __future__ import annotations

from django import forms
from django.db import IntegrityError, transaction

from .models import DevUser


class OtherUserForm(forms.Form):
    """A name, an email and whether the email counts as verified -- all a relying party sees."""

    name = forms.CharField(label="Name", max_length=200, strip=True)
    email = forms.EmailField(label="Email")
    email_verified = forms.BooleanField(
        label="Email verified",
        required=False,
        help_text="Tick to have the dev IdP vouch for this address (email_verified: true).",
    )

    def save(self) -> DevUser:
        """The test user with this email, created or updated to what was typed.

        Reusing by email keeps the ``sub`` stable, so signing in "as the same person" twice maps
        to the same identity at the relying party, as it would with a real provider.
        """
        data = self.cleaned_data
        given, _, family = data["name"].partition(" ")
        fields = {
            "name": data["name"],
            "given_name": given,
            "family_name": family.strip(),
            "preferred_username": data["email"].split("@")[0],
            "email_verified": data["email_verified"],
        }
        user = DevUser.objects.filter(email__iexact=data["email"]).first()
        if user is None:
            try:
                with transaction.atomic():
                    return DevUser.objects.create(email=data["email"], **fields)
            except IntegrityError:  # created by a concurrent request a moment ago
                user = DevUser.objects.get(email__iexact=data["email"])
        for name, value in fields.items():
            setattr(user, name, value)
        user.save(update_fields=list(fields))
        return user
