"""``python manage.py taskq_migrate``: taskq's migrations, in each database and
schema that a taskq backend in ``TASKS`` uses (what ``taskq migrate`` does for one)."""

from typing import Any

from django.core.management.base import BaseCommand
from django.db import connections

from taskq.contrib.django.conf import migrate_database


class Command(BaseCommand):
    help = "Create or upgrade taskq's tables in the databases the taskq backends use."

    def handle(self, *args: Any, **options: Any) -> None:
        for alias in connections:
            for schema in migrate_database(alias):
                self.stdout.write(f"taskq: schema {schema} of database {alias!r} is up to date")
