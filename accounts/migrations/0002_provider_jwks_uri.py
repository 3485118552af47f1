# Token issuers known by their JWKS URL alone (bearer access tokens for the site's APIs, no sign-in).

import accounts.models
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("oidc_signin", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="provider",
            name="jwks_uri",
            field=accounts.models.HttpsURLField(
                blank=True,
                help_text=(
                    "Token issuers only: where the issuer publishes the keys its access tokens are signed with, "
                    "for an issuer without a discovery document."
                ),
                max_length=500,
                verbose_name="JWKS URI",
            ),
        ),
        migrations.AlterField(
            model_name="provider",
            name="kind",
            field=models.CharField(
                choices=[
                    ("oidc", "OpenID Connect"),
                    ("github", "GitHub-style OAuth 2.0 (no ID token)"),
                    ("token-issuer", "Token issuer only: API access tokens, no sign-in"),
                ],
                default="oidc",
                max_length=20,
                verbose_name="kind",
            ),
        ),
    ]
