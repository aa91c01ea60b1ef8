"""The service's web pages and the content security policy each is sent with, by the app and by nginx.

Each policy allows what its page needs and no more, and `frame-ancestors 'none'`: no other site
may show a page in a frame to trick a click.
"""

from urllib.parse import urlsplit

# What every page gets: its own origin only, no plugins, no <base> or form posts elsewhere, no framing.
COMMON = ("default-src 'self'", "object-src 'none'", "base-uri 'none'", "form-action 'self'",
          "frame-ancestors 'none'")
# OpenSeadragon (static/vendor/openseadragon) adds one <style> of its own (no focus outline on touch
# screens): allowed by the hash of its text, not every inline style (tests/test_pages.py checks it).
OPENSEADRAGON_STYLE = "'sha256-9xTiqzfwFaL2SGb1rmr8gysEwVVjIvqWAgmZgqFqpEE='"


def origin(url):
    """The scheme://host[:port] of a URL, or "" (PUBLIC_URL unset)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def page_policy(public_url=""):
    """The crop page (static/index.html, and the files under /static/): its own scripts and styles; crops
    are shown, and fetched to measure them, from PUBLIC_URL's origin too when it is another."""
    crops = f" {origin(public_url)}" if origin(public_url) else ""
    return "; ".join([*COMMON, "script-src 'self'", f"style-src 'self' {OPENSEADRAGON_STYLE}",
                      f"img-src 'self' data: blob:{crops}",
                      f"connect-src 'self'{crops}"])


def docs_policy():
    """/docs, Redoc: it styles its parts inline, inlines its fonts and icons, and searches in a worker from a blob."""
    return "; ".join([*COMMON, "script-src 'self'", "style-src 'self' 'unsafe-inline'", "img-src 'self' data:",
                      "font-src 'self' data:", "connect-src 'self'", "worker-src 'self' blob:"])


def mirador_policy(public_url=""):
    """/mirador, Mirador on an image's manifest: its own scripts; Mirador styles its parts inline (emotion); the
    manifest's image service (info.json, tiles) is at PUBLIC_URL's origin too when it is another."""
    service = f" {origin(public_url)}" if origin(public_url) else ""
    return "; ".join([*COMMON, "script-src 'self'", "style-src 'self' 'unsafe-inline'",
                      f"img-src 'self' data: blob:{service}", f"connect-src 'self'{service}"])
