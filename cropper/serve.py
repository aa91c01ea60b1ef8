"""Run the service on this machine: nginx in front of Gunicorn when nginx is installed, else Gunicorn alone.

`python -m cropper serve` renders nginx/'s templates for local paths into a run folder, checks
them with `nginx -t`, starts both servers and stops both on Ctrl-C. The tests and the bench
start nginx through the same functions, so what they test is what runs.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from string import Template

from . import crops, errors, formats

NGINX_DIR = Path(__file__).resolve().parent / "nginx"
NGINX_CANDIDATES = ("nginx", "/usr/sbin/nginx", "/usr/local/sbin/nginx")


@dataclass(frozen=True)
class NginxSite:
    """What the nginx templates need to know about one deployment."""

    listen: str
    upstream: str  # host:port of Gunicorn
    cache_dir: Path
    access_log: Path
    cors_origins: tuple = ("*",)
    api_rate: str = "50r/s"
    api_burst: int = 100
    regen_rate: str = "10r/s"
    regen_burst: int = 20
    max_body: str = "2m"
    tls_listen: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    resolver: str = ""  # a DNS server to re-resolve the upstream's name with (Docker's, for scaled replicas)

    @classmethod
    def from_settings(cls, settings):
        return cls(
            listen=settings.nginx_listen, upstream=settings.nginx_upstream or settings.gunicorn_bind,
            cache_dir=settings.cache_dir.resolve(), access_log=settings.access_log.resolve(),
            cors_origins=settings.cors_origins, api_rate=settings.api_rate_limit, api_burst=settings.api_burst,
            regen_rate=settings.regen_rate_limit, regen_burst=settings.regen_burst,
            max_body=str(settings.max_body_bytes), tls_listen=settings.tls_listen if settings.tls_cert_file else "",
            tls_cert=settings.tls_cert_file, tls_key=settings.tls_key_file, resolver=settings.nginx_resolver,
        )


@dataclass(frozen=True)
class NginxProcess:
    """Where nginx itself keeps its files, and as whom its workers run."""

    conf_dir: Path  # holds nginx.conf and conf.d/
    temp_dir: Path  # request bodies and buffered answers
    pid_file: Path
    user: str = ""  # "" keeps the user that starts nginx

    @classmethod
    def local(cls, run_dir):
        """Everything in one run folder, so no root-owned path is needed."""
        run_dir = Path(run_dir).resolve()
        # As root, nginx would run its workers as nobody, who may not read a home-folder cache.
        return cls(run_dir, run_dir, run_dir / "nginx.pid", "root" if os.geteuid() == 0 else "")

    @classmethod
    def docker(cls, conf_dir):
        """The official nginx image's paths and user."""
        return cls(Path(conf_dir), Path("/var/cache/nginx"), Path("/var/run/nginx.pid"), "nginx")


def cors_values(origins):
    """The CORS map's default and regex: '*' for everyone, else echo only the listed origins."""
    if "*" in origins:
        return "*", "^$"  # the regex never matches a real Origin
    return "", "^(" + "|".join(re.escape(origin) for origin in origins) + ")$"


def nginx_string(text):
    """text as an nginx single-quoted string (nginx would expand a $ in it: none may be there)."""
    if "$" in text:
        raise ValueError(f"nginx cannot return a literal $: {text!r}")
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def error_pages():
    """nginx's own errors, answered in the service's JSON shape (errors.py owns the bodies)."""
    lines = [f"error_page {status} /_cropper_errors/{status};" for status, _ in errors.nginx_error_pages()]
    lines += ["location ^~ /_cropper_errors/ {", "    internal;", "    default_type application/json;",
              "    add_header Retry-After 1 always;"]
    lines += [f"    location = /_cropper_errors/{status} {{ return {status} {nginx_string(body)}; }}"
              for status, body in errors.nginx_error_pages()]
    return "\n".join(lines + ["}"])


def json_404(error):
    return nginx_string(json.dumps(errors.body_of(error)))


def template_values(site, process):
    cors_default, cors_regex = cors_values(site.cors_origins)
    resolver = f"resolver {site.resolver} valid=10s ipv6=off; " if site.resolver else ""
    return {
        "CROPPER_USER": f"user {process.user};" if process.user else "",
        "CROPPER_PID": str(process.pid_file),
        "CROPPER_TEMP_DIR": str(process.temp_dir),
        "CROPPER_CONF_DIR": str(process.conf_dir),
        "CROPPER_SNIPPETS_DIR": str(process.conf_dir / "conf.d" / "snippets"),
        "CROPPER_LISTEN": site.listen,
        "CROPPER_UPSTREAM": f"{resolver}server {site.upstream}{' resolve' if site.resolver else ''} max_fails=0;",
        "CROPPER_CACHE_DIR": str(site.cache_dir),
        "CROPPER_ACCESS_LOG": str(site.access_log),
        "CROPPER_CORS_DEFAULT": cors_default,
        "CROPPER_CORS_REGEX": cors_regex,
        "CROPPER_API_RATE": site.api_rate,
        "CROPPER_API_BURST": str(site.api_burst),
        "CROPPER_REGEN_RATE": site.regen_rate,
        "CROPPER_REGEN_BURST": str(site.regen_burst),
        "CROPPER_MAX_BODY": site.max_body,
        "CROPPER_TLS_LISTEN": site.tls_listen,
        "CROPPER_TLS_CERT": site.tls_cert,
        "CROPPER_TLS_KEY": site.tls_key,
        # What a crop is, its formats and the error bodies come from their owners, not from copies.
        "CROPPER_CROP_LOCATION": crops.nginx_location_pattern(),
        "CROPPER_CROP_TYPES": " ".join(f"{fmt.media_type} {fmt.name};" for fmt in formats.FORMATS.values()),
        "CROPPER_CROP_NOT_FOUND": json_404(errors.CropNotFoundError("There is no crop at this path.")),
        "CROPPER_NOT_FOUND": json_404(errors.NotFoundError("The requested URL was not found on the server.")),
        "CROPPER_ERROR_PAGES": error_pages(),
    }


def render(template, values):
    """Fill ${CROPPER_*}, leaving nginx's own $variables alone."""
    text = Template(template.read_text()).safe_substitute(values)
    missing = re.findall(r"\$\{(CROPPER_[A-Z_]+)\}", text)
    if missing:
        raise ValueError(f"{template.name} uses {missing} that nothing sets")
    return text


def render_nginx(site, process):
    """Write a complete nginx config for site into process.conf_dir and return the main file's path."""
    values = template_values(site, process)
    conf_d = process.conf_dir / "conf.d"
    shutil.rmtree(conf_d, ignore_errors=True)
    templates = [NGINX_DIR / "cropper.conf.template", *sorted((NGINX_DIR / "snippets").glob("*.template"))]
    if site.tls_cert:
        templates.append(NGINX_DIR / "tls.conf.template")
    for template in templates:
        target = conf_d / template.relative_to(NGINX_DIR).with_suffix("")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(render(template, values))
    main = process.conf_dir / "nginx.conf"
    main.write_text(render(NGINX_DIR / "main.conf.template", values))
    return main


def find_nginx():
    for candidate in NGINX_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def check_tls_files(cert, key):
    """List what is wrong with a certificate and key pair, in words that say how to fix it."""
    problems = []
    for label, path, marker in (("certificate", cert, "-----BEGIN CERTIFICATE-----"),
                                ("private key", key, "PRIVATE KEY-----")):
        file = Path(path)
        if not file.is_file():
            problems.append(f"TLS {label} {path} does not exist (or is not a file)")
        elif not os.access(file, os.R_OK):
            problems.append(f"TLS {label} {path} is not readable by user {os.geteuid()}, who starts nginx: "
                            f"chown it to that user or give it mode 640 with a group that user is in")
        elif marker not in file.read_text(errors="replace"):
            problems.append(f"TLS {label} {path} is not a PEM {label} (no '{marker}' line)")
    if not problems and Path(key).stat().st_mode & 0o077 & ~0o040:
        problems.append(f"TLS private key {key} is readable by other users (mode "
                        f"{Path(key).stat().st_mode & 0o777:o}): chmod 600 {key}")
    return problems


class Nginx:
    """nginx in the foreground, with its config and scratch files in run_dir."""

    def __init__(self, site, run_dir, binary=None):
        self.site, self.run_dir = site, Path(run_dir).resolve()
        self.binary = binary or find_nginx()
        self.conf = render_nginx(site, NginxProcess.local(self.run_dir))
        site.access_log.parent.mkdir(parents=True, exist_ok=True)
        self.process = None

    def test_config(self):
        result = subprocess.run([self.binary, "-t", "-q", "-p", str(self.run_dir), "-c", str(self.conf)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"nginx refused its config {self.conf}:\n{result.stderr}")

    def start(self, log=None):
        self.test_config()
        self.process = subprocess.Popen([self.binary, "-p", str(self.run_dir), "-c", str(self.conf)],
                                        stdout=log, stderr=log)
        return self

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful: finish requests in flight
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def gunicorn_command():
    """Gunicorn with the package's settings, serving the app factory: works from any folder."""
    return [sys.executable, "-m", "gunicorn", "-c", "python:cropper.gunicorn_conf", "cropper:create_app()"]


def wait_for_port(address, process, seconds=30):
    """Wait until something listens on host:port, or process exits, or the time is up."""
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        try:
            socket.create_connection((host or "127.0.0.1", int(port)), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)


def serve(settings):
    """Run until Ctrl-C (or SIGTERM): nginx + Gunicorn, or Gunicorn alone without nginx."""
    if settings.tls_cert_file:
        problems = check_tls_files(settings.tls_cert_file, settings.tls_key_file)
        if problems:
            sys.exit("Cannot start with TLS:\n  " + "\n  ".join(problems))
    binary = {"auto": find_nginx(), "off": None}.get(settings.nginx, settings.nginx)
    processes = [subprocess.Popen(gunicorn_command())]
    nginx = None
    if binary is None:
        why = "NGINX=off" if settings.nginx == "off" else "nginx is not installed"
        print(f"{why}: running Gunicorn alone on http://{settings.gunicorn_bind} (it serves crops too); "
              f"`apt-get install nginx-light` puts nginx in front.", flush=True)
    else:
        nginx = Nginx(NginxSite.from_settings(settings), Path("var/run/nginx"), binary)
        wait_for_port(settings.gunicorn_bind, processes[0])  # so nginx's first requests find it up
        nginx.start()
        processes.append(nginx.process)
        urls = [f"http://{settings.nginx_listen}"]
        if settings.tls_cert_file:
            urls.append(f"https://{settings.tls_listen}")
        print(f"Serving on {' and '.join(urls)} (nginx), Gunicorn on {settings.gunicorn_bind}; "
              f"access log: {settings.access_log}. Ctrl-C stops both.", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while all(p.poll() is None for p in processes):
            time.sleep(0.5)
        print("A server stopped on its own; stopping the other.", file=sys.stderr)
    except KeyboardInterrupt:
        pass
    finally:
        if nginx:
            nginx.stop()
        processes[0].terminate()
        processes[0].wait(timeout=40)
    return 0
