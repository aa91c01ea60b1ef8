"""The README's run command, `python -m cropper serve`: nginx + Gunicorn, or Gunicorn alone."""

import os
import signal
import subprocess
import sys

import requests

from devtools.servers import ROOT, children, find_nginx_or_skip, free_port, wait_for


def start_serve(tmp_path, standin, **env):
    env = {
        **os.environ, "CACHE_DIR": str(tmp_path / "cache"), "FATHOMNET_API_URL": standin.api_url,
        "ALLOWED_IMAGE_HOSTS": f"127.0.0.1:{standin.port}", "GUNICORN_BIND": f"127.0.0.1:{free_port()}",
        "GUNICORN_WORKERS": "2",
        "NGINX_LISTEN": f"127.0.0.1:{free_port()}", "ACCESS_LOG": str(tmp_path / "access.log"), **env,
    }
    # cwd is a folder without a .env; the command must work from anywhere with the package importable
    process = subprocess.Popen([sys.executable, "-m", "cropper", "serve"], cwd=tmp_path, env={
        **env, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return process, env


def stop_and_check(process):
    """Ctrl-C stops everything it started, cleanly."""
    started = children(process.pid)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=45) == 0
    assert all(not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
               for pid in started)
    return process.stdout.read()


def crop_through(url, standin):
    record = standin.image("gray")
    created = requests.post(f"{url}/cropper/", timeout=30,
                            json={"uuid": record.uuid, "x1": 0, "y1": 0, "x2": 32, "y2": 32})
    assert created.status_code == 200
    assert created.json()["url"].startswith(url)
    return requests.get(created.json()["url"], timeout=10)


def test_serve_runs_nginx_in_front_of_gunicorn(tmp_path, standin):
    find_nginx_or_skip()
    process, env = start_serve(tmp_path, standin)
    try:
        nginx_url = f"http://{env['NGINX_LISTEN']}"
        wait_for(f"{nginx_url}/healthz", process=process)
        served = crop_through(nginx_url, standin)
        assert served.status_code == 200 and served.headers["X-Cropper-Cache"] == "hit"
        assert (tmp_path / "var/run/nginx/nginx.conf").exists()
    finally:
        output = stop_and_check(process)
    assert "nginx" in output and env["NGINX_LISTEN"] in output
    assert (tmp_path / "access.log").read_text().count('"uri":"/cropper/"') == 1


def test_serve_runs_gunicorn_alone_without_nginx(tmp_path, standin):
    process, env = start_serve(tmp_path, standin, NGINX="off")
    try:
        app_url = f"http://{env['GUNICORN_BIND']}"
        wait_for(f"{app_url}/healthz", process=process)
        served = crop_through(app_url, standin)
        assert served.status_code == 200 and served.headers["Content-Type"] == "image/webp"
    finally:
        output = stop_and_check(process)
    assert "Gunicorn alone" in output


def test_the_readmes_no_internet_demo_answers_its_own_curl_line(tmp_path):
    ports = [str(free_port()) for _ in range(3)]
    demo = subprocess.Popen([sys.executable, "-m", "devtools.demo", "--port", ports[0], "--app-port", ports[1],
                             "--standin-port", ports[2]], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        for line in demo.stdout:
            lines.append(line)
            if line.startswith("Ctrl-C"):
                break
        curl = next(line for line in lines if line.strip().startswith("curl"))
        body = next(line for line in lines if line.strip().startswith("-d"))
        url = curl.split()[4]
        created = requests.post(url, data=body.strip()[4:-1], headers={"Content-Type": "application/json"},
                                timeout=30)
        assert created.status_code == 200, "".join(lines)
        assert requests.get(created.json()["url"], timeout=10).status_code == 200
    finally:
        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=60) == 0
