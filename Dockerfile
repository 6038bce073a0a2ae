# taskq with the HTTP service: `docker build -t taskq-app .`
# The entrypoint is the `taskq` command: `docker run --rm taskq-app worker --help`.
# An application image builds FROM this one and copies its own code (with its
# registry) into /app, or installs taskq-pg[server] into an image of its own.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md alembic.ini ./
COPY taskq ./taskq
COPY migrations ./migrations
RUN pip install ".[server]" && rm -rf /src

# Never run as root: a fixed uid so volume permissions and Kubernetes
# runAsNonRoot checks are predictable.
RUN useradd --create-home --uid 10001 --user-group taskq
USER 10001:10001
WORKDIR /app
ENV PYTHONPATH=/app

ENTRYPOINT ["taskq"]
CMD ["--help"]
