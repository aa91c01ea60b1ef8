# The crop service's app image: Gunicorn serving the app factory. nginx runs from the official
# image beside it (docker-compose.yml), reading the config this image renders (`cropper nginx-config`).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies in their own layer: code changes do not reinstall them.
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

# The package with its nginx templates and Gunicorn settings, and the `cropper` command.
COPY pyproject.toml README.md ./
COPY cropper/ cropper/
RUN pip install --no-cache-dir --no-deps .

# A non-root user owns the cache and the rendered nginx config; a fresh named volume copies
# this folder's ownership. It owns var/ in the working folder too: the relative defaults that
# .env.example repeats (METRICS_DIR=var/metrics, which Gunicorn makes at start) land there.
RUN useradd --create-home --uid 10001 --user-group cropper \
    && mkdir -p /var/cache/cropper /var/log/cropper /etc/cropper-nginx /app/var \
    && chown 10001:10001 /var/cache/cropper /etc/cropper-nginx /app/var
USER 10001:10001

ENV CACHE_DIR=/var/cache/cropper \
    GUNICORN_BIND=0.0.0.0:8000
EXPOSE 8000

ENTRYPOINT ["gunicorn", "-c", "python:cropper.ops.gunicorn_settings", "cropper:create_app()"]
