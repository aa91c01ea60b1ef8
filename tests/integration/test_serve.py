"""The README's run command, `python -m cropper serve`, and the no-internet demo, run as a person would.

Each start either works or fails in one line with a non-zero exit and nothing left running.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests

from devtools.servers import ROOT, children, find_nginx_or_skip, free_port, wait_for, wait_until


@pytest.fixture
def open_folder():
    """A folder every user may walk into (pytest's own are private to the test's user)."""
    folder = Path(tempfile.mkdtemp(prefix="cropper-serve-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def start_serve(folder, standin, new_session=False, **env):
    """serve with these settings; in a session of its own (new_session), as from a terminal of its own."""
    env = {
        **os.environ, "CACHE_DIR": str(folder / "cache"), "FATHOMNET_API_URL": standin.api_url,
        "ALLOWED_IMAGE_HOSTS": f"127.0.0.1:{standin.port}", "GUNICORN_BIND": f"127.0.0.1:{free_port()}",
        "GUNICORN_WORKERS": "2", "NGINX_LISTEN": f"127.0.0.1:{free_port()}",
        "ACCESS_LOG": str(folder / "access.log"), **env,
    }
    # cwd is a folder without a .env; the command must work from anywhere with the package importable
    process = subprocess.Popen([sys.executable, "-m", "cropper", "serve"], cwd=folder, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=new_session)
    return process, env


def alive(pid):
    return os.path.exists(f"/proc/{pid}") and open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"


def stop_and_check(process, sig=signal.SIGINT):
    """Ctrl-C (or SIGTERM) stops everything it started, cleanly."""
    started = descendants(process.pid)
    process.send_signal(sig)
    assert process.wait(timeout=45) == 0
    assert wait_until(lambda: not any(alive(pid) for pid in started), 10)
    output = process.stdout.read()
    assert "Traceback" not in output, output
    return output


def descendants(pid):
    found = children(pid)
    for child in list(found):
        found += descendants(child)
    return found


def failed_start(process, seconds=45):
    """A start that must fail: its one line, after checking it exited non-zero and left nothing behind."""
    assert process.wait(timeout=seconds) != 0
    output = process.stdout.read()
    assert "Traceback" not in output and "Serving on" not in output, output
    lines = [line for line in output.splitlines() if line.startswith("Cannot start:")]
    assert len(lines) == 1, output
    return lines[0]


def crop_through(url, standin):
    record = standin.image("gray")
    created = requests.post(f"{url}/cropper/", timeout=30,
                            json={"uuid": record.uuid, "x1": 0, "y1": 0, "x2": 32, "y2": 32})
    assert created.status_code == 200
    assert created.json()["url"].startswith(url)
    return requests.get(created.json()["url"], timeout=10)


def uid_of(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    return None


def test_serve_runs_nginx_in_front_of_gunicorn(open_folder, standin):
    find_nginx_or_skip()
    process, env = start_serve(open_folder, standin)
    try:
        nginx_url = f"http://{env['NGINX_LISTEN']}"
        wait_for(f"{nginx_url}/healthz", process=process)
        served = crop_through(nginx_url, standin)
        assert served.status_code == 200 and served.headers["X-Cropper-Cache"] == "hit"
        assert (open_folder / "var/run/nginx/nginx.conf").exists()
        if os.geteuid() == 0:  # nginx's workers dropped root
            masters = [pid for pid in descendants(process.pid) if "nginx" in Path(f"/proc/{pid}/cmdline").read_text()]
            workers = [pid for master in masters for pid in children(master)]
            assert workers and all(uid_of(pid) != 0 for pid in workers)
    finally:
        output = stop_and_check(process)
    assert "nginx" in output and env["NGINX_LISTEN"] in output
    assert (open_folder / "access.log").read_text().count('"uri":"/cropper/"') == 1


def test_sigterm_stops_it_too(open_folder, standin):
    find_nginx_or_skip()
    process, env = start_serve(open_folder, standin)
    wait_for(f"http://{env['NGINX_LISTEN']}/healthz", process=process)
    stop_and_check(process, signal.SIGTERM)


def test_ctrl_c_in_serves_terminal_stops_everything_without_a_traceback_even_at_once(open_folder, standin):
    """Ctrl-C reaches the terminal's whole process group: the cache pruner Gunicorn starts must not be in it
    (a Ctrl-C while the pruner was still importing printed its KeyboardInterrupt); Gunicorn stops it itself."""
    process, env = start_serve(open_folder, standin, new_session=True, NGINX="off")
    wait_for(f"http://{env['GUNICORN_BIND']}/healthz", process=process)
    assert wait_until(lambda: any(b"prune" in Path(f"/proc/{pid}/cmdline").read_bytes()
                                  for pid in descendants(process.pid)), 10)
    pruner = next(pid for pid in descendants(process.pid) if b"prune" in Path(f"/proc/{pid}/cmdline").read_bytes())
    assert os.getpgid(pruner) != os.getpgid(process.pid)  # not in the terminal's group: no Ctrl-C of its own
    started = descendants(process.pid)
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C in serve's terminal
    assert process.wait(timeout=45) == 0
    assert wait_until(lambda: not any(alive(pid) for pid in started), 10)  # the pruner too, stopped by Gunicorn
    assert "Traceback" not in process.stdout.read()


def test_serve_runs_gunicorn_alone_without_nginx(open_folder, standin):
    process, env = start_serve(open_folder, standin, NGINX="off")
    try:
        app_url = f"http://{env['GUNICORN_BIND']}"
        wait_for(f"{app_url}/healthz", process=process)
        served = crop_through(app_url, standin)
        assert served.status_code == 200 and served.headers["Content-Type"] == "image/webp"
    finally:
        output = stop_and_check(process)
    assert "Gunicorn alone" in output and "Warning" not in output


def test_gunicorn_alone_beyond_loopback_says_to_put_nginx_in_front(open_folder, standin):
    process, env = start_serve(open_folder, standin, NGINX="off", GUNICORN_BIND=f"0.0.0.0:{free_port()}")
    try:
        wait_for(f"http://127.0.0.1:{env['GUNICORN_BIND'].rpartition(':')[2]}/healthz", process=process)
    finally:
        output = stop_and_check(process)
    assert "no deadline for slow clients" in output and "nginx in front" in output


@pytest.mark.parametrize("taken", ["GUNICORN_BIND", "NGINX_LISTEN"])
def test_a_port_in_use_is_one_line_and_a_failed_exit(open_folder, standin, taken):
    find_nginx_or_skip()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen(1)
        port = squatter.getsockname()[1]
        process, env = start_serve(open_folder, standin, **{taken: f"127.0.0.1:{port}"})
        line = failed_start(process)
    assert taken in line and f"127.0.0.1:{port}" in line


def test_a_config_nginx_refuses_starts_nothing(open_folder, standin):
    find_nginx_or_skip()
    process, _ = start_serve(open_folder, standin, NGINX_LISTEN="127.0.0.1:99999")
    line = failed_start(process)
    assert "nginx refused its config" in line
    assert not [pid for pid in descendants(process.pid) if alive(pid)]


@pytest.mark.skipif(os.geteuid() != 0, reason="only a service started as root drops nginx's workers to another user")
def test_as_root_a_cache_nginx_workers_cannot_read_is_refused(tmp_path, standin):
    find_nginx_or_skip()
    tmp_path.chmod(0o700)  # private to root, as a home folder is
    process, _ = start_serve(tmp_path, standin, CACHE_DIR=str(tmp_path / "cache"))
    line = failed_start(process)
    assert "cannot read the cache folder" in line and "CACHE_DIR" in line


def demo_command(*extra, ports=None):
    ports = ports or [free_port() for _ in range(3)]
    return [sys.executable, "-m", "devtools.demo", "--port", str(ports[0]), "--app-port", str(ports[1]),
            "--standin-port", str(ports[2]), *extra]


def demo(*extra, **env):
    process = subprocess.Popen(demo_command(*extra), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True, env={**os.environ, **env})
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith("Ctrl-C"):
            break
    return process, lines


def failed_demo(ports=None, **env):
    """A demo that must not start: its lines, after checking it exited non-zero at once, printing no banner."""
    started = time.monotonic()
    result = subprocess.run(demo_command(ports=ports), cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={**os.environ, **env})
    assert result.returncode != 0 and time.monotonic() - started < 20, result
    output = result.stdout + result.stderr
    assert "Traceback" not in output and "Open the page" not in output and "curl" not in output, output
    lines = output.splitlines()
    assert lines and all(line.startswith("Cannot start the demo: ") for line in lines), output
    return lines


def nothing_listens(port):
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def test_the_readmes_no_internet_demo_answers_its_own_curl_line(open_folder):
    process, lines = demo("--folder", str(open_folder))
    try:
        curl = next(line for line in lines if line.strip().startswith("curl"))
        body = next(line for line in lines if line.strip().startswith("-d"))
        url = curl.split()[4]
        created = requests.post(url, data=body.strip()[4:-1], headers={"Content-Type": "application/json"},
                                timeout=30)
        assert created.status_code == 200, "".join(lines)
        assert requests.get(created.json()["url"], timeout=10).status_code == 200
        page = next(line for line in lines if "Open the page" in line).split()[-1]
        assert requests.get(page, timeout=10).headers["Content-Type"].startswith("text/html")
        image = page.split("image=")[1]
        assert requests.get(f"{url.rsplit('/cropper', 1)[0]}/images/{image}/boxes", timeout=30).json()["boxes"]
    finally:
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C in its terminal reaches the whole group
        assert process.wait(timeout=60) == 0
    output = "".join(lines) + process.stdout.read()
    assert "Traceback" not in output
    assert f"Cache: {open_folder / 'cache'}" in output and (open_folder / "cache").is_dir()  # kept, where it said


@pytest.mark.parametrize("option", ["--port", "--app-port", "--standin-port"])
def test_the_demo_with_a_port_in_use_says_which_in_one_line_starts_nothing_and_fails(option):
    """`cropper serve` (or another demo) already running: no banner pointing at the other service, no traceback."""
    if option == "--port":
        find_nginx_or_skip()  # without nginx the demo has no nginx port to check
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen(1)
        taken = squatter.getsockname()[1]
        ports = [free_port() for _ in range(3)]
        ports[["--port", "--app-port", "--standin-port"].index(option)] = taken
        lines = failed_demo(ports)
    assert len(lines) == 1 and option in lines[0] and f"127.0.0.1:{taken}" in lines[0], lines
    assert all(nothing_listens(port) for port in ports if port != taken)


def test_the_demo_with_an_nginx_that_cannot_be_run_says_so_in_one_line():
    lines = failed_demo(NGINX="/nonexistent/sbin/nginx")
    assert len(lines) == 1 and "NGINX=/nonexistent/sbin/nginx" in lines[0], lines


def test_a_second_demo_on_the_same_ports_names_each_port_and_leaves_the_first_running(open_folder):
    find_nginx_or_skip()
    process, lines = demo("--folder", str(open_folder))
    try:
        ports = [int(process.args[process.args.index(option) + 1])
                 for option in ("--port", "--app-port", "--standin-port")]
        second = failed_demo(ports)
        assert [line.split("(")[1].split(")")[0] for line in second] == ["--standin-port", "--app-port", "--port"]
        assert requests.get(f"http://127.0.0.1:{ports[0]}/healthz", timeout=10).status_code == 200
    finally:
        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(timeout=60) == 0


def test_the_demo_with_nginx_off_serves_the_page_and_crops_from_gunicorn(open_folder):
    started = time.monotonic()
    process, lines = demo("--folder", str(open_folder), NGINX="off")  # waited 30 s for nginx's port, then failed
    try:
        app_port = process.args[process.args.index("--app-port") + 1]
        page = next(line for line in lines if "Open the page" in line).split()[-1]
        assert page.startswith(f"http://127.0.0.1:{app_port}/?image="), "".join(lines)
        assert time.monotonic() - started < 25
        assert requests.get(page, timeout=10).headers["Content-Type"].startswith("text/html")
        curl = next(line for line in lines if line.strip().startswith("curl"))
        assert curl.split()[4] == f"http://127.0.0.1:{app_port}/cropper/"
    finally:
        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(timeout=60) == 0


def test_the_demo_fails_when_its_service_stops_on_its_own(open_folder):
    process, lines = demo("--folder", str(open_folder))
    started = descendants(process.pid)
    gunicorn = next(pid for pid in started if b"gunicorn" in Path(f"/proc/{pid}/cmdline").read_bytes())
    os.kill(gunicorn, signal.SIGTERM)  # serve stops the rest and says so: the demo must not end as if all went well
    assert process.wait(timeout=60) == 1
    assert wait_until(lambda: not any(alive(pid) for pid in started), 10)


def test_the_demo_in_the_background_stops_on_sigterm(open_folder):
    process, lines = demo("--folder", str(open_folder))
    started = descendants(process.pid)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    assert wait_until(lambda: not any(alive(pid) for pid in started), 10)
    assert "Traceback" not in "".join(lines) + process.stdout.read()


@pytest.mark.parametrize("nginx", ["/nonexistent/sbin/nginx", "OFF"])
def test_an_nginx_that_cannot_be_run_is_one_line_and_a_failed_exit(open_folder, standin, nginx):
    process, env = start_serve(open_folder, standin, NGINX=nginx)
    line = failed_start(process)
    assert f"NGINX={nginx}" in line


def ipv6_loopback_or_skip():
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")


def serve_and_crop(folder, standin, **settings):
    """Start serve with these settings, make one crop through its nginx, stop it: what it printed."""
    process, env = start_serve(folder, standin, **settings)
    try:
        nginx_url = f"http://{env['NGINX_LISTEN']}"
        wait_for(f"{nginx_url}/healthz", process=process)
        assert crop_through(nginx_url, standin).status_code == 200
    finally:
        output = stop_and_check(process)
    return output


def test_serve_listens_on_ipv6_addresses_as_nginx_and_gunicorn_spell_them(open_folder, standin):
    find_nginx_or_skip()
    ipv6_loopback_or_skip()
    output = serve_and_crop(open_folder, standin, NGINX_LISTEN=f"[::1]:{free_port()}",
                            GUNICORN_BIND=f"[::1]:{free_port()}")
    assert "Serving on" in output and "Cannot start" not in output


@pytest.mark.parametrize("listen", ["127.0.0.1:{port} default_server", "{port}"])
def test_serve_takes_a_listen_as_nginx_spells_it_and_prints_where_to_browse(open_folder, standin, listen):
    find_nginx_or_skip()
    port = free_port()
    process, env = start_serve(open_folder, standin, NGINX_LISTEN=listen.format(port=port))
    try:
        wait_for(f"http://127.0.0.1:{port}/healthz", process=process)
        assert wait_until(lambda: process.poll() is None and (open_folder / "var/run/nginx/nginx.pid").exists(), 10)
        time.sleep(1)  # past serve's own wait for the port, which used to end in a traceback
        assert process.poll() is None
    finally:
        output = stop_and_check(process)
    assert f"Serving on http://127.0.0.1:{port} (nginx)" in output


def test_serve_runs_gunicorn_on_a_unix_socket_behind_nginx(open_folder, standin):
    find_nginx_or_skip()
    assert "Serving on" in serve_and_crop(open_folder, standin, GUNICORN_BIND=f"unix:{open_folder / 'gunicorn.sock'}")


def test_serve_runs_from_a_folder_whose_path_has_a_space(open_folder, standin):
    """The quick start from a checkout in "~/My projects/": every path nginx is given holds the space."""
    find_nginx_or_skip()
    spaced = open_folder / "My projects"
    spaced.mkdir(mode=0o755)
    process, env = start_serve(spaced, standin, CACHE_DIR=str(spaced / "cache"), ACCESS_LOG=str(spaced / "access.log"))
    try:
        nginx_url = f"http://{env['NGINX_LISTEN']}"
        wait_for(f"{nginx_url}/healthz", process=process)
        served = crop_through(nginx_url, standin)
        assert served.status_code == 200 and served.headers["X-Cropper-Cache"] == "hit"  # nginx, from the cache
        assert requests.get(f"{nginx_url}/", timeout=10).status_code == 200  # the page, from the static copy
    finally:
        stop_and_check(process)
    assert (spaced / "access.log").read_text().count('"uri":"/cropper/"') == 1
