"""Run the service on this machine: nginx in front of Gunicorn when nginx is installed, else Gunicorn alone.

`python -m cropper serve` renders nginx/'s templates for local paths into a run folder, checks
them with `nginx -t`, starts both servers and stops both on Ctrl-C. The tests and the bench
start nginx through the same functions, so what they test is what runs.
"""

import grp
import json
import os
import pwd
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
from urllib.parse import urlsplit

from . import crops, errors, formats, iiif, stores
from .cluster import FAILED_HOST_SECONDS
from .config import Settings

NGINX_DIR = Path(__file__).resolve().parent / "nginx"
STATIC_DIR = Path(__file__).resolve().parent / "static"  # the web page: copied beside nginx's config
NGINX_CANDIDATES = ("nginx", "/usr/sbin/nginx", "/usr/local/sbin/nginx")


DEFAULTS = Settings()  # the sites' defaults are the settings' own


@dataclass(frozen=True)
class NginxSite:
    """What the nginx templates need to know about one deployment."""

    listen: str
    upstream: str  # host:port of Gunicorn
    cache_dir: Path
    access_log: Path
    cors_origins: tuple = ("*",)
    api_rate: str = DEFAULTS.api_rate_limit
    api_burst: int = DEFAULTS.api_burst
    regen_rate: str = DEFAULTS.regen_rate_limit
    regen_burst: int = DEFAULTS.regen_burst
    iiif_rate: str = DEFAULTS.iiif_rate_limit
    iiif_burst: int = DEFAULTS.iiif_burst
    max_body: str = str(DEFAULTS.max_body_bytes)  # nginx refuses what the app would, before it is sent on
    tls_listen: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    resolver: str = ""  # a DNS server to re-resolve the upstream's name with (Docker's, for scaled replicas)
    metrics_allow: tuple = DEFAULTS.metrics_allow  # who may read /metrics and nginx's stub_status
    real_ip_from: tuple = ()  # proxies (a cluster's front) whose X-Forwarded-For names the client
    store_url: str = ""  # CACHE_BACKEND=s3: http://host:port/bucket nginx reads crops from; "": from cache_dir
    store_cache_max: int = DEFAULTS.store_cache_max_bytes  # bytes of nginx's local cache of crops read from the store

    @classmethod
    def from_settings(cls, settings):
        return cls(
            listen=settings.nginx_listen, upstream=settings.nginx_upstream or settings.gunicorn_bind,
            cache_dir=settings.cache_dir.resolve(), access_log=settings.access_log.resolve(),
            cors_origins=settings.cors_origins, api_rate=settings.api_rate_limit, api_burst=settings.api_burst,
            regen_rate=settings.regen_rate_limit, regen_burst=settings.regen_burst,
            iiif_rate=settings.iiif_rate_limit, iiif_burst=settings.iiif_burst,
            max_body=str(settings.max_body_bytes), tls_listen=settings.tls_listen if settings.tls_cert_file else "",
            tls_cert=settings.tls_cert_file, tls_key=settings.tls_key_file, resolver=settings.nginx_resolver,
            metrics_allow=settings.metrics_allow, real_ip_from=settings.nginx_real_ip_from,
            store_url=store_url(settings) if settings.cache_backend == "s3" else "",
            store_cache_max=settings.store_cache_max_bytes,
        )


@dataclass(frozen=True)
class NginxProcess:
    """Where nginx itself keeps its files, and as whom its workers run."""

    conf_dir: Path  # holds nginx.conf and conf.d/
    temp_dir: Path  # request bodies and buffered answers
    pid_file: Path
    user: str = ""  # "" keeps the user that starts nginx

    @classmethod
    def local(cls, run_dir, user=""):
        """Everything in one run folder, so no root-owned path is needed; workers as user (as root: required)."""
        run_dir = Path(run_dir).resolve()
        return cls(run_dir, run_dir, run_dir / "nginx.pid", user)

    @classmethod
    def docker(cls, conf_dir):
        """The paths and user of the compose files' nginx image (nginx/Dockerfile): Debian's nginx, www-data."""
        return cls(Path(conf_dir), Path("/var/cache/nginx"), Path("/var/run/nginx.pid"), "www-data")


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


def error_pages(snippets_dir):
    """nginx's own errors, answered in the service's JSON shape (errors.py owns the bodies), CORS included."""
    pages = errors.nginx_error_pages()
    # Not 404 for every location: the crop and API locations answer theirs themselves (or the app does).
    lines = [f"error_page {status} /_cropper_errors/{status};" for status, _, _ in pages if status != 404]
    lines += ["location ^~ /_cropper_errors/ {", "    internal;",
              "    types { }  # or a path ending in .gif would make the JSON image/gif",
              "    default_type application/json;"]
    for status, body, retry_after in pages:
        lines += [f"    location = /_cropper_errors/{status} {{",
                  f"        include \"{snippets_dir}/cropper-cors.conf\";"]
        if retry_after:
            lines.append(f"        add_header Retry-After {retry_after} always;")
        if status == 405:
            lines.append("        add_header Allow $cropper_allow always;")
        lines += [f"        return {status} {nginx_string(body)};", "    }"]
    return "\n".join(lines + ["}"])


def json_404(error):
    return nginx_string(json.dumps(errors.body_of(error)))


def store_url(settings):
    """Where nginx reads crops from the shared store: its public endpoint, path-style, and the bucket."""
    base = settings.s3_public_url or settings.s3_endpoint_url or f"https://s3.{settings.s3_region}.amazonaws.com"
    return f"{base.rstrip('/')}/{settings.s3_bucket}"


def store_values(site, process):
    """The http-level part of reading crops from the store (its upstream, nginx's cache of it), its host, its path."""
    if not site.store_url:
        return {"CROPPER_STORE_HTTP": "", "CROPPER_STORE_HOST": "", "CROPPER_STORE_PATH": ""}
    url = urlsplit(site.store_url)
    if url.scheme != "http" or not url.hostname:
        raise ValueError(f"nginx reads the store over plain http://host:port (S3_PUBLIC_URL), not {site.store_url}")
    host = f"{url.hostname}:{url.port or 80}"
    # With a resolver (Docker's), the store's name is looked up again as nginx runs: a store container
    # started again elsewhere is found (resolve needs the upstream in a shared zone; nginx 1.27.3+).
    server = ("zone cropper_store_peers 64k; " if site.resolver else "") + " ".join(
        upstream_servers(site.resolver, [host], "max_fails=0"))
    http = "\n".join([
        f"upstream cropper_store {{ {server} keepalive 16; }}",
        f"proxy_cache_path \"{process.temp_dir / 'store-cache'}\" levels=1:2 keys_zone=cropper_store:16m "
        f"max_size={site.store_cache_max} inactive=7d use_temp_path=off;",
        "map $upstream_cache_status $cropper_store_cache { HIT hit; STALE hit; UPDATING hit; REVALIDATED hit; "
        "default store; }",
    ])
    return {"CROPPER_STORE_HTTP": http, "CROPPER_STORE_HOST": host, "CROPPER_STORE_PATH": url.path.rstrip("/")}


def upstream_servers(resolver, hosts, params):
    """An upstream's server lines; with a resolver (Docker's), names are looked up again as nginx runs."""
    lines = [f"resolver {resolver} valid=10s ipv6=off;"] if resolver else []
    return lines + [f"server {host}{' resolve' if resolver else ''} {params};" for host in hosts]


def common_values(site, process):
    """What every config needs, a host's and the front's: nginx's own files, the log, CORS, the body cap, errors."""
    snippets = process.conf_dir / "conf.d" / "snippets"
    cors_default, cors_regex = cors_values(site.cors_origins)
    return {
        "CROPPER_USER": f"user {process.user};" if process.user else "",
        "CROPPER_PID": str(process.pid_file),
        "CROPPER_TEMP_DIR": str(process.temp_dir),
        "CROPPER_CONF_DIR": str(process.conf_dir),
        "CROPPER_SNIPPETS_DIR": str(snippets),
        "CROPPER_ACCESS_LOG": str(site.access_log),
        "CROPPER_CORS_DEFAULT": cors_default,
        "CROPPER_CORS_REGEX": cors_regex,
        "CROPPER_MAX_BODY": site.max_body,
        "CROPPER_NOT_FOUND": json_404(errors.NotFoundError("The requested URL was not found on the server.")),
        "CROPPER_ERROR_PAGES": error_pages(snippets),
    }


def template_values(site, process):
    return {
        **common_values(site, process),
        "CROPPER_STATIC_DIR": str(process.conf_dir / "static"),
        "CROPPER_LISTEN": site.listen,
        "CROPPER_UPSTREAM": " ".join(upstream_servers(site.resolver, [site.upstream], "max_fails=0")),
        "CROPPER_CACHE_DIR": str(site.cache_dir),
        "CROPPER_API_RATE": site.api_rate,
        "CROPPER_API_BURST": str(site.api_burst),
        "CROPPER_REGEN_RATE": site.regen_rate,
        "CROPPER_REGEN_BURST": str(site.regen_burst),
        "CROPPER_IIIF_RATE": site.iiif_rate,
        "CROPPER_IIIF_BURST": str(site.iiif_burst),
        "CROPPER_TLS_LISTEN": site.tls_listen,
        "CROPPER_TLS_CERT": site.tls_cert,
        "CROPPER_TLS_KEY": site.tls_key,
        # What a crop is, its formats and the error bodies come from their owners, not from copies.
        "CROPPER_CROP_LOCATION": crops.nginx_location_pattern(),
        "CROPPER_CROP_TYPES": " ".join(f"{fmt.media_type} {fmt.name};" for fmt in formats.FORMATS.values()),
        "CROPPER_IIIF_LOCATION": crops.nginx_iiif_location_pattern(),
        "CROPPER_IIIF_PROFILE_LINK": nginx_string(iiif.PROFILE_LINK),
        "CROPPER_IIIF_TYPES": " ".join(f"{fmt.media_type} {name};" for name, fmt in formats.iiif_names().items()),
        "CROPPER_CROP_NOT_FOUND": json_404(errors.CropNotFoundError("There is no crop at this path.")),
        "CROPPER_METRICS_ALLOW": " ".join(f"allow {network};" for network in site.metrics_allow),
        "CROPPER_REAL_IP": real_ip(site.real_ip_from),
        **store_values(site, process),
    }


def real_ip(proxies):
    """Take the client's address from the last X-Forwarded-For entry, for connections from `proxies` only.

    Only the last: the front appends the address it saw, and anything before it is the client's to make up.
    """
    if not proxies:
        return ""
    return " ".join(f"set_real_ip_from {network};" for network in proxies) + " real_ip_header X-Forwarded-For;"


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
    files = NGINX_DIR / "files" / f"{'store' if site.store_url else 'disk'}.conf.template"
    for template in [*templates, files]:
        target = conf_d / template.relative_to(NGINX_DIR).with_suffix("")
        if template == files:
            target = conf_d / "snippets" / "cropper-files.conf"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(render(template, values))
    main = process.conf_dir / "nginx.conf"
    main.write_text(render(NGINX_DIR / "main.conf.template", values))
    # The page's files go where its config is, so nginx in its own container (Docker) has them too.
    shutil.rmtree(process.conf_dir / "static", ignore_errors=True)
    shutil.copytree(STATIC_DIR, process.conf_dir / "static")
    return main


@dataclass(frozen=True)
class FrontSite:
    """The front nginx of several hosts: where it listens, and the hosts' nginx (CLUSTER_HOSTS, in order)."""

    listen: str
    hosts: tuple
    access_log: Path
    cors_origins: tuple = ("*",)
    max_body: str = str(DEFAULTS.max_body_bytes)
    resolver: str = ""  # a DNS server to look the hosts' names up again with (Docker's: a host restarted moves)

    @classmethod
    def from_settings(cls, settings):
        return cls(listen=settings.nginx_listen, hosts=settings.cluster_hosts, access_log=settings.access_log.resolve(),
                   cors_origins=settings.cors_origins, max_body=str(settings.max_body_bytes),
                   resolver=settings.nginx_resolver)


def render_front(front, process):
    """Write the front nginx's config into process.conf_dir and return the main file's path."""
    if not front.hosts:
        raise ValueError("the front needs CLUSTER_HOSTS: the hosts' nginx, as host:port")
    values = common_values(front, process)
    values.update({
        "CROPPER_FRONT_LISTEN": front.listen,
        # max_fails/fail_timeout as cluster.FAILED_HOST_SECONDS: the front and the hosts pass over a failed host alike
        "CROPPER_FRONT_SERVERS": "\n    ".join(upstream_servers(
            front.resolver, front.hosts, f"max_fails=1 fail_timeout={FAILED_HOST_SECONDS}s")),
        "CROPPER_UUID": crops.UUID,
        "CROPPER_ERROR_PAGES": values["CROPPER_ERROR_PAGES"].replace("\n", "\n    "),
    })
    conf_d = process.conf_dir / "conf.d"
    shutil.rmtree(conf_d, ignore_errors=True)
    (conf_d / "snippets").mkdir(parents=True)
    (conf_d / "front.conf").write_text(render(NGINX_DIR / "front" / "front.conf.template", values))
    (conf_d / "snippets" / "cropper-cors.conf").write_text(
        render(NGINX_DIR / "snippets" / "cropper-cors.conf.template", values))
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

    def __init__(self, site, run_dir, binary=None, user=""):
        self.site, self.run_dir = site, Path(run_dir).resolve()
        self.binary = binary or find_nginx()
        render = render_front if isinstance(site, FrontSite) else render_nginx
        self.conf = render(site, NginxProcess.local(self.run_dir, user))
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


def gunicorn_command(app="cropper:create_app()"):
    """Gunicorn with the package's settings, serving the app factory: works from any folder."""
    return [sys.executable, "-m", "gunicorn", "-c", "python:cropper.gunicorn_conf", app]


class StartError(Exception):
    """Why the service cannot start, in one line that says what to fix."""


def reachable_address(listen):
    """Where this machine reaches a listen: nginx's "8080" or "127.0.0.1:8080 default_server", Gunicorn's bind."""
    address = listen.split()[0]  # nginx's parameters follow the address
    return address if ":" in address else f"127.0.0.1:{address}"  # a port alone listens on every address


def wait_for_port(address, process, seconds=30):
    """True once something listens on host:port; False if process exits or the time is up first."""
    address = reachable_address(address)
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if address.startswith("unix:"):  # Gunicorn's (and nginx's) spelling of a Unix socket
                with socket.socket(socket.AF_UNIX) as probe:
                    probe.settimeout(1)
                    probe.connect(address[len("unix:"):])
            else:  # "[::1]:8080": the brackets are the address's spelling, not part of the host
                socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def check_free(address, setting):
    """Refuse to start on a port something else already holds (it would answer in our place)."""
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        return  # not host:port (e.g. Docker's "80 default_server"): nothing to check here
    with socket.socket(socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]") or "0.0.0.0", int(port)))
        except OSError as error:
            raise StartError(f"{address} ({setting}) is not free: {error.strerror}; stop what uses it "
                             f"or set {setting} to another address") from None


def is_loopback(address):
    if address.startswith("unix:"):  # a Unix socket: only this machine reaches it
        return True
    host = address.rpartition(":")[0].strip("[]")
    return host in ("localhost", "::1") or host.startswith("127.")


def worker_user(settings):
    """As whom nginx's workers run: NGINX_USER, else (when started as root) an unprivileged user."""
    if os.geteuid() != 0:
        return ""
    if settings.nginx_user:
        return settings.nginx_user
    for name in ("www-data", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise StartError("no unprivileged user (www-data or nobody) to run nginx's workers as: set NGINX_USER")


def can_reach(user, folder):
    """True if user may walk into folder (every folder on the way lets them through)."""
    try:
        account = pwd.getpwnam(user)
    except KeyError:
        return False
    if account.pw_uid == 0:
        return True
    groups = {account.pw_gid} | {g.gr_gid for g in grp.getgrall() if user in g.gr_mem}
    folder = nearest_existing(folder)  # what does not exist yet will be made with open modes
    for step in [folder, *folder.parents]:
        mode = os.stat(step)
        allowed = mode.st_mode & (0o100 if mode.st_uid == account.pw_uid else
                                  0o010 if mode.st_gid in groups else 0o001)
        if not allowed:
            return False
    return True


DEFAULT_CACHE_DIR = DEFAULTS.cache_dir
RUN_DIR = Path("var/run/nginx")
# Where a service started as root keeps what nginx's unprivileged workers must reach, when the
# working folder is private (as root's home is): the usual places for a system service.
SYSTEM_CACHE_DIR, SYSTEM_RUN_DIR = Path("/var/cache/cropper"), Path("/run/cropper/nginx")


def for_workers(settings, user):
    """Settings whose cache folder nginx's workers (user) can read: a private default moves to /var/cache."""
    if not user or can_reach(user, settings.cache_dir.resolve()):
        return settings
    if settings.cache_dir != DEFAULT_CACHE_DIR:
        raise StartError(f"nginx's workers run as {user}, who cannot read the cache folder "
                         f"{settings.cache_dir.resolve()}: set CACHE_DIR to a folder {user} can reach "
                         f"(e.g. {SYSTEM_CACHE_DIR}), or NGINX_USER to a user who can")
    print(f"Started as root: nginx's workers run as {user}, who cannot reach {DEFAULT_CACHE_DIR.resolve()}; "
          f"the cache is in {SYSTEM_CACHE_DIR} (set CACHE_DIR to choose).", flush=True)
    return settings.replace(cache_dir=SYSTEM_CACHE_DIR)


def nearest_existing(folder):
    while not folder.exists():
        folder = folder.parent
    return folder


def prepared_nginx(settings):
    """(nginx rendered for this machine and checked with `nginx -t`, or None to run Gunicorn alone; settings)."""
    binary = {"auto": find_nginx(), "off": None}.get(settings.nginx, settings.nginx)
    if binary is None:
        return None, settings
    if not shutil.which(binary):
        raise StartError(f"NGINX={settings.nginx} is not an nginx binary that can be run: set NGINX to auto, off, "
                         f"or the path of nginx")
    user = worker_user(settings)
    settings = for_workers(settings, user)
    run_dir = RUN_DIR if not user or can_reach(user, RUN_DIR.resolve()) else SYSTEM_RUN_DIR
    try:
        nginx = Nginx(NginxSite.from_settings(settings), run_dir, binary, user=user)
    except ValueError as error:  # settings nginx cannot be given (a store it cannot read over plain http)
        raise StartError(str(error)) from None
    try:
        nginx.test_config()
    except RuntimeError as error:
        raise StartError(str(error).replace("\n", " ").strip()) from None
    return nginx, settings


def serve(settings):
    """Run until Ctrl-C (or SIGTERM): nginx + Gunicorn, or Gunicorn alone without nginx.

    Everything is checked before anything starts (TLS files, nginx's config, free ports), and what
    did start is stopped when the rest cannot: a failed start is one line and a non-zero exit.
    """
    try:
        return _serve(settings)
    except StartError as error:
        print(f"Cannot start: {error}", file=sys.stderr, flush=True)
        return 1


def prepare_store(settings):
    """Create the shared crop store's bucket if need be, and open its crops to reads (safe to repeat)."""
    try:
        stores(settings)[0].ensure_bucket()
    except errors.StoreUnavailableError as error:
        raise StartError(error.message) from None


def _serve(settings):
    if settings.tls_cert_file:
        problems = check_tls_files(settings.tls_cert_file, settings.tls_key_file)
        if problems:
            raise StartError("TLS: " + "; ".join(problems))
    if settings.cache_backend == "s3":
        prepare_store(settings)
    nginx, settings = prepared_nginx(settings)
    check_free(settings.gunicorn_bind, "GUNICORN_BIND")
    if nginx:
        check_free(settings.nginx_listen, "NGINX_LISTEN")
        if settings.tls_cert_file:
            check_free(settings.tls_listen, "TLS_LISTEN")
    else:
        why = "NGINX=off" if settings.nginx == "off" else "nginx is not installed"
        print(f"{why}: running Gunicorn alone on http://{settings.gunicorn_bind} (it serves crops too); "
              f"`apt-get install nginx-light` puts nginx in front.", flush=True)
        if not is_loopback(settings.gunicorn_bind):
            print(f"Warning: Gunicorn alone listens on {settings.gunicorn_bind}, beyond this machine. It has no "
                  f"deadline for slow clients, which can stall it: every deployment puts nginx in front.",
                  file=sys.stderr, flush=True)
    processes = []
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # unwinds to the finally below
    try:
        # Gunicorn reads its settings from the environment: pass on what serve decided (the cache folder).
        environment = {**os.environ, "CACHE_DIR": str(settings.cache_dir)}
        processes.append(subprocess.Popen(gunicorn_command(), env=environment))
        if not wait_for_port(settings.gunicorn_bind, processes[0]):
            raise StartError(f"Gunicorn did not start listening on {settings.gunicorn_bind} (its log is above)")
        if nginx:
            nginx.start()
            processes.append(nginx.process)
            if not wait_for_port(settings.nginx_listen, nginx.process, seconds=10):
                raise StartError(f"nginx did not start listening on {settings.nginx_listen} (its log is above)")
            urls = [f"http://{reachable_address(settings.nginx_listen)}"] + (
                [f"https://{reachable_address(settings.tls_listen)}"] if settings.tls_cert_file else [])
            print(f"Serving on {' and '.join(urls)} (nginx), Gunicorn on {settings.gunicorn_bind}; "
                  f"access log: {settings.access_log}. Ctrl-C stops both.", flush=True)
        while all(p.poll() is None for p in processes):
            time.sleep(0.5)
        raise StartError("a server stopped on its own (its log is above); stopped the other")
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second signal must not cut the stopping short
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if nginx:
            nginx.stop()
        for process in processes:
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=40)
