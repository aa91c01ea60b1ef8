"""Gunicorn settings: `gunicorn -c gunicorn.conf.py wsgi:app`. Each can be set from the environment.

Like cropper/config.py for the app, this file is the one place Gunicorn's settings are read.
"""

import os

# Where to listen. nginx proxies to this address; keep it on loopback unless it sits in a container.
bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")

# Worker processes. Cropping and encoding are CPU-bound and hold the GIL, so more processes
# than cores only adds memory; downloads wait on the network, which threads cover.
workers = int(os.environ.get("GUNICORN_WORKERS") or (os.cpu_count() or 1) + 1)
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gthread")
threads = int(os.environ.get("GUNICORN_THREADS", "4"))

# A worker silent for this long is killed and replaced. It must outlast the slowest honest
# request: a download (DOWNLOAD_TIMEOUT, 60 s by default) plus decoding it.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "90"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))

# Recycle workers now and then so slow leaks (Pillow, fragmentation) cannot build up;
# the jitter keeps them from all restarting at once.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "5000"))
max_requests_jitter = int(os.environ.get("GUNICORN_MAX_REQUESTS_JITTER", "500"))

# nginx writes the access log operators monitor; Gunicorn's own would only duplicate it.
accesslog = os.environ.get("GUNICORN_ACCESSLOG") or None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOGLEVEL", "info")
