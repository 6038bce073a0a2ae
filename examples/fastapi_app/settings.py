"""Where the example's data lives: ``DATABASE_URL`` (the application's tables), else
``TASKQ_DATABASE_URL``, else taskq's embedded PostgreSQL. taskq's tables go to the
same database (``TASKQ_SCHEMA``, default ``taskq``)."""

import os


def database_url() -> str:
    url = os.environ.get("DATABASE_URL") or os.environ.get("TASKQ_DATABASE_URL")
    if not url:
        from taskq.db.embedded import embedded_url  # zero configuration, for trying it

        url = embedded_url()
    return url


def sqlalchemy_url(url: str, driver: str = "psycopg") -> str:
    """``url`` for SQLAlchemy on psycopg 3 (one driver serves sync and asyncio)."""
    return f"postgresql+{driver}://" + url.split("://", 1)[1]


DATABASE_URL = database_url()
