"""nginx's config, rendered from the templates in nginx_templates/ for every deployment.

One renderer fills in the templates' ${CROPPER_*} values for a host (`render_nginx`) and for the
front of several hosts (`render_front`): local runs (`cropper serve`), the tests, the bench and
Docker (`cropper nginx-config`) all use it. What a crop is, its formats and the error bodies come
from their owners (crops.py, formats.py, errors.py), never from copies.
"""

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from string import Template
from urllib.parse import urlsplit

from .. import crops, errors, formats, pages
from ..cluster import FAILED_HOST_SECONDS
from ..config import Settings
from ..iiif import image as iiif
from ..storage import breaker

TEMPLATES_DIR = Path(__file__).resolve().parent / "nginx_templates"
STATIC_DIR = Path(__file__).resolve().parent.parent / "static"  # the web page: copied beside nginx's config
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
    public_url: str = ""  # PUBLIC_URL: the page's policy lets it show crops from there
    store_cache: Path | None = None  # that cache's folder (a purge clears an image's entries there); None: nginx's own
    store_cache_valid: int = DEFAULTS.store_cache_valid  # seconds before nginx asks the store again about a crop
    admin_allow: tuple = DEFAULTS.admin_allow  # who may reach the operator endpoints (/admin/)

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
            store_cache_max=settings.store_cache_max_bytes, public_url=settings.public_url,
            store_cache=settings.store_cache_folder.resolve(), store_cache_valid=settings.store_cache_valid,
            admin_allow=settings.admin_allow,
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
    """text as an nginx quoted string, in the quotes it does not hold (nginx would expand a $ in it: none may be)."""
    if "$" in text:
        raise ValueError(f"nginx cannot return a literal $: {text!r}")
    quote = '"' if "'" in text and '"' not in text else "'"  # a CSP's 'self' reads as written
    return quote + text.replace("\\", "\\\\").replace(quote, "\\" + quote) + quote


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
                  f"        include \"{snippets_dir}/cropper-cors.conf\";",
                  "        add_header X-Content-Type-Options nosniff always;"]
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
        return {f"CROPPER_STORE_{name}": "" for name in ("HTTP", "HOST", "PATH", "OUTAGE", "CACHE_VALID")}
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
        # While the app's breaker is open: no server to wait on (nginx logs "no live upstreams" for each read).
        "upstream cropper_store_unreachable { server 127.0.0.1:9 down; }",
        f"proxy_cache_path \"{site.store_cache or process.temp_dir / 'store-cache'}\" levels=1:2 "
        f"keys_zone=cropper_store:16m "
        f"max_size={site.store_cache_max} inactive=7d use_temp_path=off;",
        "map $upstream_cache_status $cropper_store_cache { HIT hit; STALE hit; UPDATING hit; REVALIDATED hit; "
        "default store; }",
    ])
    return {"CROPPER_STORE_HTTP": http, "CROPPER_STORE_HOST": host, "CROPPER_STORE_PATH": url.path.rstrip("/"),
            "CROPPER_STORE_OUTAGE": str(site.cache_dir / breaker.OPEN_FILE),
            "CROPPER_STORE_CACHE_VALID": f"{site.store_cache_valid}s"}


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
        "CROPPER_PAGE_POLICY": nginx_string(pages.page_policy(site.public_url)),
        "CROPPER_MIRADOR_POLICY": nginx_string(pages.mirador_policy(site.public_url)),
        "CROPPER_ADMIN_ALLOW": " ".join(f"allow {network};" for network in site.admin_allow),
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
    templates = [TEMPLATES_DIR / "cropper.conf.template", *sorted((TEMPLATES_DIR / "snippets").glob("*.template"))]
    if site.tls_cert:
        templates.append(TEMPLATES_DIR / "tls.conf.template")
    files = TEMPLATES_DIR / "files" / f"{'store' if site.store_url else 'disk'}.conf.template"
    for template in [*templates, files]:
        target = conf_d / template.relative_to(TEMPLATES_DIR).with_suffix("")
        if template == files:
            target = conf_d / "snippets" / "cropper-files.conf"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(render(template, values))
    main = process.conf_dir / "nginx.conf"
    main.write_text(render(TEMPLATES_DIR / "main.conf.template", values))
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
    source_address: str = ""  # the address it connects to the hosts from (their NGINX_REAL_IP_FROM), or the system's

    @classmethod
    def from_settings(cls, settings):
        return cls(listen=settings.nginx_listen, hosts=settings.cluster_hosts, access_log=settings.access_log.resolve(),
                   cors_origins=settings.cors_origins, max_body=str(settings.max_body_bytes),
                   resolver=settings.nginx_resolver, source_address=settings.front_source_address)


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
        "CROPPER_FRONT_BIND": f"proxy_bind {front.source_address};" if front.source_address else "",
        "CROPPER_ERROR_PAGES": values["CROPPER_ERROR_PAGES"].replace("\n", "\n    "),
    })
    conf_d = process.conf_dir / "conf.d"
    shutil.rmtree(conf_d, ignore_errors=True)
    (conf_d / "snippets").mkdir(parents=True)
    (conf_d / "front.conf").write_text(render(TEMPLATES_DIR / "front" / "front.conf.template", values))
    (conf_d / "snippets" / "cropper-cors.conf").write_text(
        render(TEMPLATES_DIR / "snippets" / "cropper-cors.conf.template", values))
    main = process.conf_dir / "nginx.conf"
    main.write_text(render(TEMPLATES_DIR / "main.conf.template", values))
    return main
