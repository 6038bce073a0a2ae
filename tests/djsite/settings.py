"""Settings of the Django project the Django tests run (in-process and in worker
processes), read from the environment the tests set:

- DJSITE_DATABASE_URL: the test server (a libpq URI), as a role whose search_path
  (``ALTER ROLE ... SET search_path``) is a schema of its own for Django's tables, so
  parallel test runs never share a django_migrations table; set on the role, not given
  as ``options=-c search_path=...``, which PgBouncer refuses (the pooler leg);
- DJSITE_TASKQ_SCHEMA: taskq's schema, as the backend's OPTIONS["SCHEMA"];
- DJSITE_APP_NAME: application_name of Django's connections (to count them).
"""

import os

from psycopg.conninfo import conninfo_to_dict

_db = conninfo_to_dict(os.environ["DJSITE_DATABASE_URL"])

SECRET_KEY = "taskq-tests"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["*"]

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django_tasks",
    "taskq.contrib.django",
    "djsite.orders",
]
try:
    import django.tasks  # noqa: F401  (Django 6: the framework is built in)

    INSTALLED_APPS.remove("django_tasks")
except ImportError:
    pass

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _db.get("dbname", "postgres"),
        "USER": _db.get("user", ""),
        "PASSWORD": _db.get("password", ""),
        "HOST": _db.get("host", ""),
        "PORT": _db.get("port", ""),
        "OPTIONS": {"application_name": os.environ.get("DJSITE_APP_NAME", "djsite")},
    }
}

TASKS = {
    "default": {
        "BACKEND": "taskq.contrib.django.TaskqBackend",
        "QUEUES": ["default", "mail", "conns"],
        "OPTIONS": {"SCHEMA": os.environ["DJSITE_TASKQ_SCHEMA"]},
    }
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
