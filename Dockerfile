# syntax=docker/dockerfile:1
# One image for every component of mail-proxy; the command picks one:
#   docker run IMAGE api | sender | operator | migrate
# Postgres is external here (GMP_DATABASE_URL): the embedded-Postgres extra is left out.

# --- build: install the package and its dependencies into a virtualenv ---------------------
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/mail-proxy
WORKDIR /src
COPY pyproject.toml README.md LICENSE LICENSE-BSL-1.1 ./
COPY core ./core
COPY api ./api
COPY sender ./sender
COPY operator ./operator
COPY cli ./cli
# `operator` adds kopf; no `embedded` (pgserver) in a cluster image.
RUN /opt/mail-proxy/bin/pip install ".[operator]"

# --- runtime: the virtualenv, tini, and an unprivileged user ----------------------------------
FROM python:3.11-slim
# tini as PID 1 forwards SIGTERM (senders drain on it) and reaps zombies. Not pinned: Debian
# security updates replace the exact version, and a pin would break the build.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 mailproxy \
    && useradd --system --uid 10001 --gid mailproxy --home-dir /nonexistent --no-create-home \
       --shell /usr/sbin/nologin mailproxy
COPY --from=build /opt/mail-proxy /opt/mail-proxy
# The root filesystem is read-only in the chart: no bytecode writes, /tmp is an emptyDir.
ENV PATH=/opt/mail-proxy/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    GMP_HOST=0.0.0.0
LABEL org.opencontainers.image.title="mail-proxy" \
      org.opencontainers.image.description="Kubernetes-native mail queue: REST in, SMTP out" \
      org.opencontainers.image.source="https://github.com/genropy/mail-proxy" \
      org.opencontainers.image.licenses="Apache-2.0 AND BUSL-1.1"
USER 10001:10001
WORKDIR /tmp
EXPOSE 8000 9100
ENTRYPOINT ["/usr/bin/tini", "--", "mail-proxy"]
CMD ["api"]
