"""The Django app ``taskq.contrib.django`` (label ``taskq``): the ``taskq_worker``
management command and the migration that creates taskq's tables."""

from django.apps import AppConfig


class TaskqConfig(AppConfig):
    name = "taskq.contrib.django"
    label = "taskq"
    verbose_name = "taskq"
    default_auto_field = "django.db.models.BigAutoField"
