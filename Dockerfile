# The crop service's app image: Gunicorn serving wsgi:app. nginx runs from the official image
# beside it (docker-compose.yml), serving the shared cache volume.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies in their own layer: code changes do not reinstall them.
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY wsgi.py gunicorn.conf.py ./
COPY cropper/ cropper/

# A non-root user owns the cache; a fresh named volume copies this folder's ownership.
RUN useradd --create-home --uid 10001 --user-group cropper \
    && mkdir -p /var/cache/cropper /var/log/cropper \
    && chown 10001:10001 /var/cache/cropper
USER 10001:10001

ENV CACHE_DIR=/var/cache/cropper \
    GUNICORN_BIND=0.0.0.0:8000
EXPOSE 8000

ENTRYPOINT ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
