"""The WSGI entry point Gunicorn loads: `gunicorn wsgi:app`."""

from cropper import create_app

app = create_app()
