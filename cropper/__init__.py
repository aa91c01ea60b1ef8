"""FathomNet Cropper: crops of FathomNet images, cached on disk, served by URL.

Importing the package (or any module of it but cropper.http) loads no Flask: `create_app` imports
the HTTP layer when it is called, so Gunicorn's `cropper:create_app()` works as ever.
"""


def create_app(settings=None, **parts):
    """The WSGI app: see cropper.http.create_app."""
    from .http import create_app as build

    return build(settings, **parts)
