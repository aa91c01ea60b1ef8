"""Each page's content security policy: what it allows, the same from the app and from nginx's config."""

import base64
import hashlib
import re
from pathlib import Path

from cropper import create_app
from cropper.ops.nginx import NginxProcess, NginxSite, render_nginx
from cropper.pages import OPENSEADRAGON_STYLE, docs_policy, mirador_policy, page_policy

OPENSEADRAGON = Path(__file__).resolve().parents[1] / "cropper" / "static" / "vendor" / "openseadragon"


def test_the_one_inline_style_the_page_allows_is_the_one_openseadragon_adds():
    """A new OpenSeadragon with another <style> fails here, not in a browser: its hash goes in pages.py."""
    script = (OPENSEADRAGON / "openseadragon.min.js").read_text()
    styles = re.findall(r'createElement\("style"\);.{0,80}?\.textContent="([^"]*)"', script)
    digests = [base64.b64encode(hashlib.sha256(style.encode()).digest()).decode() for style in styles]
    assert [f"'sha256-{digest}'" for digest in digests] == [OPENSEADRAGON_STYLE]


def test_the_page_may_show_crops_from_public_url_and_nothing_else_from_elsewhere():
    assert page_policy() == ("default-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
                             f"frame-ancestors 'none'; script-src 'self'; style-src 'self' {OPENSEADRAGON_STYLE}; "
                             "img-src 'self' data: blob:; connect-src 'self'")
    policy = page_policy("https://crops.example:8443/cropper")
    assert "img-src 'self' data: blob: https://crops.example:8443;" in policy
    assert policy.endswith("connect-src 'self' https://crops.example:8443")


def test_redoc_may_style_inline_and_search_in_a_worker_but_not_be_framed():
    policy = docs_policy()
    assert "style-src 'self' 'unsafe-inline'" in policy and "worker-src 'self' blob:" in policy
    assert "frame-ancestors 'none'" in policy and "script-src 'self';" in policy


def test_mirador_may_style_inline_and_show_the_image_service_at_public_url_but_run_no_inline_script():
    policy = mirador_policy("https://crops.example:8443/cropper")
    assert "script-src 'self';" in policy and "style-src 'self' 'unsafe-inline';" in policy
    assert "img-src 'self' data: blob: https://crops.example:8443;" in policy and "frame-ancestors 'none'" in policy
    assert policy.endswith("connect-src 'self' https://crops.example:8443")


def test_the_app_sends_each_page_its_policy(settings):
    client = create_app(settings.replace(public_url="https://crops.example")).test_client()
    for path in ("/", "/static/js/page.js"):
        assert client.get(path).headers["Content-Security-Policy"] == page_policy("https://crops.example")
    assert client.get("/docs").headers["Content-Security-Policy"] == docs_policy()
    assert client.get("/mirador").headers["Content-Security-Policy"] == mirador_policy("https://crops.example")
    assert "Content-Security-Policy" not in client.get("/healthz").headers  # an API answer is no page


def test_nginx_sends_the_page_the_apps_policy(tmp_path):
    site = NginxSite(listen="127.0.0.1:1", upstream="127.0.0.1:2", cache_dir=tmp_path / "cache",
                     access_log=tmp_path / "access.log", public_url="https://crops.example")
    render_nginx(site, NginxProcess.local(tmp_path / "nginx"))
    locations = (tmp_path / "nginx" / "conf.d" / "snippets" / "cropper-locations.conf").read_text()
    header = f'add_header Content-Security-Policy "{page_policy("https://crops.example")}" always;'
    assert locations.count(header) == 2  # the page, and the files under /static/
    mirador = f'add_header Content-Security-Policy "{mirador_policy("https://crops.example")}" always;'
    assert locations.count(mirador) == 1
