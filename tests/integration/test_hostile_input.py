"""Hostile input over real sockets: every error answer, from Gunicorn or from nginx, is JSON.

Raw sockets, so the requests can be as broken as an attacker likes: bad request lines, URLs and
headers over the servers' limits, malformed and oversized chunked bodies, numbers and nesting that
Python's defaults choke on. HTTP/0.9 and 505 are exempt (there is no HTTP/1.x answer to give).
"""

import json
import socket

import pytest
import requests

from devtools.servers import NginxServer, find_nginx_or_skip

UUID = "9e140d51-2a43-5870-9337-eb66c5a4de6d"


def raw(url, data, timeout=10):
    """Send raw bytes to the server at url; return (status, headers, body) of the answer."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(data)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except (ConnectionResetError, socket.timeout):
            pass
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", len(body)))
    return int(lines[0].split()[1]), headers, body[:length]


def assert_json_error(status, headers, body, expected):
    assert status == expected, (status, body[:300])
    assert headers["content-type"].startswith("application/json"), headers
    assert headers.get("x-content-type-options") == "nosniff", headers  # nginx's and Gunicorn's own errors too
    error = json.loads(body)["error"]
    assert set(error) == {"code", "message", "details"} and error["message"]
    return error


def chunked(body, size=65536):
    return b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + size]), body[i:i + size])
                    for i in range(0, len(body), size)) + b"0\r\n\r\n"


def post(path, body, extra=b"", length=True):
    head = b"POST %s HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nConnection: close\r\n" % path
    if length:
        head += b"Content-Length: %d\r\n" % len(body)
    return head + extra + b"\r\n" + body


DEEP = b"[" * 100_000 + b"]" * 100_000
OVER_LIMIT = b"[" + b"1," * 700_000 + b"1]"  # 1.4 MB, over the 1 MiB MAX_BODY_BYTES

# (name, raw request, status): what both Gunicorn alone and nginx in front must answer in JSON.
APP_CASES = [
    ("deep nesting", post(b"/cropper/", DEEP), 400),
    ("NaN", post(b"/cropper/", b'{"uuid": "%s", "x1": NaN, "y1": 0, "x2": 1, "y2": 1}' % UUID.encode()), 400),
    ("Infinity in a batch", post(b"/cropper-list/", b'[{"x1": Infinity}]'), 400),
    ("310 digits", post(b"/cropper/", b'{"uuid": "%s", "x1": 1%s, "y1": 0, "x2": 1, "y2": 1}'
                        % (UUID.encode(), b"0" * 310)), 422),
    ("not UTF-8", post(b"/cropper/", b'{"uuid": "\xff\xfe"}'), 400),
]
GUNICORN_CASES = APP_CASES + [
    ("bad request line", b"GARBAGE\r\n\r\n", 400),
    ("long URL", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414),
    ("huge header", b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"b" * 20000 + b"\r\n\r\n", 431),
    ("malformed chunk", post(b"/cropper/", b"zz\r\n{}\r\n0\r\n\r\n", b"Transfer-Encoding: chunked\r\n", False), 400),
    ("chunked over the limit",
     post(b"/cropper-list/", chunked(OVER_LIMIT), b"Transfer-Encoding: chunked\r\n", False), 413),
    ("length over the limit", post(b"/cropper-list/", OVER_LIMIT), 413),
]
NGINX_CASES = APP_CASES + [
    ("bad request line", b"GARBAGE / HTTP/1.1\r\n\r\n", 400),
    ("long URL", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414),
    # nginx answers its 494 (headers too large) with the status 400, and the 494 page
    ("huge header", b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"b" * 20000 + b"\r\n\r\n", 400),
    ("POST to a crop file", b"POST /crops/9e/%s/0_0_1_1.png HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n"
     b"Connection: close\r\n\r\n" % UUID.encode(), 405),
    ("an unknown path ending in .gif", b"GET /nothing.gif HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", 404),
    ("a malformed crop path ending in .jpg",
     b"GET /crops/9e/x/0_0_1_1.jpg HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", 404),
    ("chunked over the limit",
     post(b"/cropper-list/", chunked(OVER_LIMIT), b"Transfer-Encoding: chunked\r\n", False), 413),
    ("length over the limit", post(b"/cropper-list/", OVER_LIMIT), 413),
]


@pytest.mark.parametrize("name, request_bytes, status", GUNICORN_CASES, ids=[c[0] for c in GUNICORN_CASES])
def test_gunicorn_alone_answers_every_error_in_json(gunicorn, name, request_bytes, status):
    assert_json_error(*raw(gunicorn.url, request_bytes), status)
    assert requests.get(f"{gunicorn.url}/healthz", timeout=5).status_code == 200  # and stays up


@pytest.mark.parametrize("name, request_bytes, status", NGINX_CASES, ids=[c[0] for c in NGINX_CASES])
def test_nginx_answers_every_error_in_json(nginx, name, request_bytes, status):
    assert_json_error(*raw(nginx.url, request_bytes), status)
    assert requests.get(f"{nginx.url}/healthz", timeout=5).status_code == 200


# Batch items each answered in place (their own 422), never a 500 for the whole batch.
HOSTILE_ITEMS = [
    '{"uuid": "%s", "x1": 1%s, "y1": 0, "x2": 10, "y2": 10}' % (UUID, "0" * 400),  # a 401-digit corner
    '{"uuid": %s, "x1": true, "y1": 0.1e1, "x2": 10, "y2": 10}' % ("9" * 400),  # a 400-digit uuid, a boolean
    '{"uuid": "\\ud800", "x1": -1%s, "y1": 0, "x2": 1, "y2": 1}' % ("0" * 330),  # a lone surrogate
    '{"__proto__": {"x1": 1}, "uuid": "%s", "uuid": 5, "x1": 0, "y1": 0, "x2": 1, "y2": 1}' % UUID,
    '"a bare string"',
]


@pytest.mark.parametrize("server", ["gunicorn", "nginx"])
@pytest.mark.parametrize("form", ['{"crops": [%s]}', "[%s]"], ids=["object", "list"])
def test_hostile_batch_items_are_answered_each_in_place(request, server, form):
    url = request.getfixturevalue(server).url
    answer = requests.post(f"{url}/cropper-list/", data=(form % ",".join(HOSTILE_ITEMS)).encode(), timeout=30,
                           headers={"Content-Type": "application/json"})
    assert answer.status_code == 200, answer.text[:300]
    items = answer.json()
    assert [item["error"]["code"] for item in items] == ["validation_error"] * len(HOSTILE_ITEMS)
    assert items[0]["uuid"] == UUID and items[0]["box"] == [None, 0, 10, 10]  # what is safe to repeat, repeated
    assert items[0]["error"]["details"] == {"x1": ["Must be less than 1000000000."]}
    assert items[1]["uuid"] is None and items[1]["box"] == [None, 1.0, 10, 10]
    assert items[2]["uuid"] is None  # a lone surrogate is not repeated back


def test_nginx_errors_carry_cors_so_a_browser_tool_can_read_a_429(gunicorn, tmp_path):
    find_nginx_or_skip()
    with NginxServer(gunicorn, gunicorn.cache_dir, tmp_path, api_rate="1r/m", api_burst=1) as nginx:
        headers = {"Origin": "https://tool.example"}
        body = {"uuid": UUID, "x1": 0, "y1": 0, "x2": 1, "y2": 1}
        answers = [requests.post(f"{nginx.url}/cropper/", json=body, headers=headers, timeout=10) for _ in range(4)]
    limited = answers[-1]
    error = assert_json_error(limited.status_code, {k.lower(): v for k, v in limited.headers.items()},
                              limited.content, 429)
    assert error["code"] == "too_many_requests"
    assert limited.headers["Access-Control-Allow-Origin"] == "*"
    assert "Retry-After" in limited.headers["Access-Control-Expose-Headers"]
    assert limited.headers["Retry-After"] == "1"


def test_nginx_says_502_in_json_when_gunicorn_is_gone(gunicorn, standin, tmp_path):
    find_nginx_or_skip()

    class Gone:
        port = gunicorn.port + 0

    with socket.socket() as placeholder:  # a port nobody listens on
        placeholder.bind(("127.0.0.1", 0))
        Gone.port = placeholder.getsockname()[1]
    with NginxServer(Gone, gunicorn.cache_dir, tmp_path, wait=False) as nginx:
        answer = requests.post(f"{nginx.url}/cropper/", json={}, timeout=10,
                               headers={"Origin": "https://tool.example"})
    error = assert_json_error(answer.status_code, {k.lower(): v for k, v in answer.headers.items()},
                              answer.content, 502)
    assert error["code"] == "service_unavailable" and answer.headers["Access-Control-Allow-Origin"] == "*"
