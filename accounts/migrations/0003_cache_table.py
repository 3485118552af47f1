# The database cache's table, for a site whose cache (CACHE_URL) is Django's DatabaseCache -- the
# demo's embedded default -- so that `migrate` alone leaves a working site. Idempotent, and a no-op
# for any other cache; Django's test runner makes cache tables for test databases itself.

from django.conf import settings
from django.core.management import call_command
from django.db import migrations


def create_cache_tables(apps, schema_editor):
    """``createcachetable`` for this database: it skips tables that exist and caches of other backends."""
    if any(cache.get("BACKEND", "").endswith("DatabaseCache") for cache in settings.CACHES.values()):
        call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)


class Migration(migrations.Migration):
    dependencies = [
        ("oidc_signin", "0002_provider_jwks_uri"),
    ]

    operations = [
        migrations.RunPython(create_cache_tables, migrations.RunPython.noop, elidable=True),
    ]
