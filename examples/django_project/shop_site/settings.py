"""A small Django project whose ``@task`` functions run on taskq.

The database is ``DATABASE_URL`` (a libpq URI), else ``TASKQ_DATABASE_URL``, else
taskq's embedded PostgreSQL, so ``python manage.py migrate`` works with no setup.
"""

import os

from psycopg.conninfo import conninfo_to_dict


def _database_url() -> str:
    url = os.environ.get("DATABASE_URL") or os.environ.get("TASKQ_DATABASE_URL")
    if not url:
        from taskq.db.embedded import embedded_url  # zero configuration, for trying it

        url = embedded_url()
    return url


_db = conninfo_to_dict(_database_url())

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "shop_site.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "taskq.contrib.django",  # taskq's tables (manage.py migrate) and `manage.py taskq_worker`
    "shop",
]
try:
    import django.tasks  # noqa: F401  (Django 6.0+: the Tasks framework is built in)
except ImportError:
    INSTALLED_APPS.insert(0, "django_tasks")  # Django 5.2: the backport

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",  # on psycopg 3
        "NAME": _db.get("dbname", "postgres"),
        "USER": _db.get("user", ""),
        "PASSWORD": _db.get("password", ""),
        "HOST": _db.get("host", ""),
        "PORT": _db.get("port", ""),
        "OPTIONS": {k: v for k, v in _db.items() if k in ("options", "sslmode")},
    }
}

# Django's Tasks framework, on taskq: tasks are rows in taskq's table, stored in the
# same transaction as the view's own writes.
TASKS = {
    "default": {
        "BACKEND": "taskq.contrib.django.TaskqBackend",
        "QUEUES": ["default", "emails"],
    }
}

EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"  # mail shows on stdout

LOGGING = {
    "version": 1,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "INFO"},
}
