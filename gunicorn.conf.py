"""Gunicorn's settings for `gunicorn wsgi:app` run from this folder (Gunicorn reads ./gunicorn.conf.py).

They live in the package (cropper/ops/gunicorn_settings.py), so an installed service has them too.
"""

from cropper.ops.gunicorn_settings import *  # noqa: F401,F403
