"""Gunicorn's settings for `gunicorn wsgi:app` run from this folder (Gunicorn reads ./gunicorn.conf.py).

They live in the package (cropper/gunicorn_conf.py), so an installed service has them too.
"""

from cropper.gunicorn_conf import *  # noqa: F401,F403
