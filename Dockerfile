# The crop service's app image: Gunicorn serving the app factory. nginx runs from its own image beside
# it (nginx/Dockerfile), reading the config this image renders (`cropper nginx-config`).
#
# BASE_IMAGE: the official Python image where an image registry is reachable (the default), or a
# Debian bookworm base made without one (docker/debian-base.sh; docs/deployment.md, "Docker"), whose
# Python 3.11 is Debian's. Either way the service runs from a virtualenv, since Debian's pip refuses
# to install into the system's Python. Written for the classic builder as well as BuildKit (no
# RUN --mount, no --secret): Debian's docker.io has no buildx.
ARG BASE_IMAGE=python:3.11-slim-bookworm

# Python 3.11 and nothing else: the official image has it, a bare Debian gets Debian's.
FROM ${BASE_IMAGE} AS python
# hadolint ignore=DL3008
RUN if ! command -v python3 >/dev/null; then \
        apt-get update \
        && apt-get install -y --no-install-recommends python3 \
        && rm -rf /var/lib/apt/lists/*; \
    fi

# The virtualenv, built in a stage of its own: pip, its cache and the wheels never reach the image.
FROM python AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# Debian keeps venv's ensurepip in python3-venv; the official image has it.
# hadolint ignore=DL3008
RUN if ! python3 -c "import ensurepip" 2>/dev/null; then \
        apt-get update && apt-get install -y --no-install-recommends python3-venv; \
    fi \
    && python3 -m venv /opt/venv
# Dependencies in their own layer: code changes do not reinstall them. wheelhouse/ (made by
# docker/wheelhouse.sh, ignored by git) is optional: when it holds wheels, pip installs from it with
# no network, so a machine whose TLS goes through a certificate authority of its own builds without
# that certificate in any layer; without it, pip downloads from PyPI.
COPY requirements.txt wheelhous[e] /tmp/build/
RUN if ls /tmp/build/*.whl >/dev/null 2>&1; then set -- --no-index --find-links /tmp/build; fi \
    && /opt/venv/bin/pip install "$@" -r /tmp/build/requirements.txt
# The package with its nginx templates and Gunicorn settings, and the `cropper` command.
COPY pyproject.toml README.md /tmp/build/src/
COPY cropper/ /tmp/build/src/cropper/
RUN if ls /tmp/build/*.whl >/dev/null 2>&1; then set -- --no-index --find-links /tmp/build; fi \
    && /opt/venv/bin/pip install "$@" --no-deps /tmp/build/src

FROM python
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /opt/venv /opt/venv

WORKDIR /app

# A non-root user owns the cache, the rendered nginx config and the folder of Gunicorn's socket
# (docker-compose.cluster.yml); a fresh named volume copies its folder's ownership. It owns var/ in
# the working folder too: the relative defaults that .env.example repeats (VAR_DIR=var, and
# METRICS_DIR under it, which Gunicorn makes at start) land there.
RUN useradd --create-home --uid 10001 --user-group cropper \
    && mkdir -p /var/cache/cropper /var/log/cropper /etc/cropper-nginx /run/cropper /app/var \
    && chown 10001:10001 /var/cache/cropper /etc/cropper-nginx /run/cropper /app/var
USER 10001:10001

ENV CACHE_DIR=/var/cache/cropper \
    GUNICORN_BIND=0.0.0.0:8000
EXPOSE 8000

ENTRYPOINT ["gunicorn", "-c", "python:cropper.ops.gunicorn_settings", "cropper:create_app()"]
