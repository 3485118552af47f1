"""Spent single-use tokens (``accounts.replay``) move from the cache to a table the cache cannot cull."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('oidc_signin', '0005_callback_issuer'),
    ]

    operations = [
        migrations.CreateModel(
            name='SpentToken',
            fields=[
                ('digest', models.CharField(max_length=64, primary_key=True, serialize=False, verbose_name='digest')),
                ('expires_at', models.DateTimeField(db_index=True, verbose_name='expires')),
            ],
            options={
                'verbose_name': 'spent token',
                'verbose_name_plural': 'spent tokens',
            },
        ),
    ]
