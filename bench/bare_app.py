"""The floor of a cached crop POST: a bare Flask app that parses the same body and answers a URL.

No validation, no disk, no metrics, no CORS: what Flask and Gunicorn cost by themselves. The bench
runs it under the service's own Gunicorn settings (`gunicorn -c python:cropper.gunicorn_conf
'bench.bare_app:create_app()'`) and compares.
"""

from flask import Flask, jsonify, request


def create_app():
    app = Flask(__name__)

    @app.post("/cropper/")
    def crop():
        body = request.get_json()
        uuid = body["uuid"]
        name = f"{body['x1']}_{body['y1']}_{body['x2']}_{body['y2']}.{body.get('format', 'webp')}"
        return jsonify({"url": f"{request.host_url}crops/{uuid[:2]}/{uuid}/{name}"})

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    return app
