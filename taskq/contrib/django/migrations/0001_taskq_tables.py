"""taskq's tables, made by taskq's own migrations (the ones ``taskq migrate`` runs).

For each database that a taskq backend in ``TASKS`` uses (``"default"`` when no
backend is configured), in that backend's schema, to the newest revision. It is
idempotent, so ``taskq migrate`` before or after it does no harm; upgrading taskq
later means running ``taskq migrate`` (or ``python manage.py taskq_migrate``) again.
Reversing it leaves the tables alone: drop the schema yourself to remove them.
"""

from typing import Any

from django.db import migrations


def create_taskq_tables(apps: Any, schema_editor: Any) -> None:
    from taskq.contrib.django.conf import migrate_database

    migrate_database(schema_editor.connection.alias)


class Migration(migrations.Migration):
    initial = True
    atomic = False  # taskq's migrations run on a connection of their own
    dependencies: list[tuple[str, str]] = []
    operations = [
        migrations.RunPython(create_taskq_tables, migrations.RunPython.noop, elidable=False),
    ]
