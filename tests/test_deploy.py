"""The deployment files: docker-compose.yml, the Dockerfiles and nginx's rendered config agree with each other.

These check the files without a Docker daemon: compose files are validated and composed by Debian's
docker-compose, the Dockerfiles linted by hadolint, the renderings made here. tests/docker/ starts
the stacks for real.
"""

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from cropper.config import Settings

ROOT = Path(__file__).resolve().parent.parent


def tool_or_skip(name, *extra_dirs):
    for folder in ("", *extra_dirs):
        found = shutil.which(name, path=folder or None)
        if found:
            return found
    if os.environ.get("CI"):
        raise RuntimeError(f"{name} is missing; .ci/setup should have installed it")
    pytest.skip(f"{name} is not installed")


DOCKERFILES = ("Dockerfile", "nginx/Dockerfile", "docker/seaweedfs/Dockerfile", "docker/prometheus/Dockerfile")


def deployment_folder(folder, *compose_files):
    """The compose files beside a .env made from .env.example, as a deployment would have them, and the
    folders they build from and mount (compose checks that a build context exists)."""
    for name in compose_files:
        shutil.copy(ROOT / name, folder / name)
    shutil.copy(ROOT / ".env.example", folder / ".env")
    for name in ("Dockerfile", "nginx", "docker", "monitoring"):
        (folder / name).symlink_to(ROOT / name)
    return folder


@pytest.fixture
def compose_dir(tmp_path):
    return deployment_folder(tmp_path, "docker-compose.yml", "docker-compose.tls.yml")


def compose(compose_dir, *args, env=None):
    binary = tool_or_skip("docker-compose")
    return subprocess.run([binary, *args], cwd=compose_dir, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=60)


def test_docker_compose_file_is_valid(compose_dir):
    result = compose(compose_dir, "config", "-q")
    assert result.returncode == 0, result.stderr


def test_tls_override_is_valid_and_needs_the_certificate_folder(compose_dir):
    files = ["-f", "docker-compose.yml", "-f", "docker-compose.tls.yml"]
    assert compose(compose_dir, *files, "config", "-q", env={"TLS_CERT_DIR": "/etc/ssl"}).returncode == 0
    without = compose(compose_dir, *files, "config", "-q", env={"TLS_CERT_DIR": ""})
    assert without.returncode != 0 and "TLS_CERT_DIR" in without.stderr


def compose_services(compose_dir, *files, env=None):
    args = [arg for name in files for arg in ("-f", name)]
    result = compose(compose_dir, *args, "config", env=env)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)["services"]


def test_nginx_reads_the_config_the_app_image_renders_into_a_shared_volume(compose_dir):
    services = compose_services(compose_dir, "docker-compose.yml")
    renderer, nginx = services["nginx-config"], services["nginx"]
    assert renderer["entrypoint"] == ["cropper", "nginx-config", "/etc/cropper-nginx"]
    assert renderer["build"] == services["app"]["build"]
    assert nginx["command"] == ["nginx", "-c", "/etc/cropper-nginx/nginx.conf"]
    assert nginx["depends_on"]["nginx-config"]["condition"] == "service_completed_successfully"
    assert "nginx-config:/etc/cropper-nginx:rw" in renderer["volumes"]
    assert "nginx-config:/etc/cropper-nginx:ro" in nginx["volumes"]  # the same path: the config names it
    assert not any("template" in volume for volume in nginx["volumes"])


def test_the_docker_rendering_is_the_tested_rendering_with_dockers_values(compose_dir, tmp_path):
    """Run the renderer with the environment compose gives the nginx-config service."""
    env = compose_services(compose_dir, "docker-compose.yml", "docker-compose.tls.yml",
                           env={"TLS_CERT_DIR": "/etc/ssl"})["nginx-config"]["environment"]
    out = tmp_path / "rendered"
    result = subprocess.run([sys.executable, "-m", "cropper", "nginx-config", str(out)], cwd=tmp_path,
                            env={"PATH": os.environ["PATH"], **{k: str(v) for k, v in env.items() if v is not None}},
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    main = (out / "nginx.conf").read_text()
    assert "user www-data;" in main and f'include "{out}/conf.d/*.conf";' in main  # Debian's nginx (nginx/Dockerfile)
    site = (out / "conf.d" / "cropper.conf").read_text()
    assert "listen 80 default_server;" in site
    # Debian's nginx 1.22 refuses "resolve" (1.27.3+): the name is looked up as nginx starts or reloads.
    assert "server app:8000 max_fails=0;" in site and "resolve" not in site
    assert "set_real_ip_from" not in site  # one host: the client is the connection's address
    locations = (out / "conf.d" / "snippets" / "cropper-locations.conf").read_text()
    files = (out / "conf.d" / "snippets" / "cropper-files.conf").read_text()
    assert 'root "/var/cache/cropper";' in files and "/var/log/cropper/access.log" in locations
    assert 'ssl_certificate "/etc/nginx/tls/fullchain.pem";' in (out / "conf.d" / "tls.conf").read_text()


def test_nginx_drops_idle_app_connections_before_gunicorn_closes_them(tmp_path):
    """Otherwise nginx now and then sends a request down a socket Gunicorn just closed: a 502 under steady load."""
    out = tmp_path / "rendered"
    result = subprocess.run([sys.executable, "-m", "cropper", "nginx-config", str(out)], cwd=tmp_path,
                            env={"PATH": os.environ["PATH"], "CACHE_DIR": str(tmp_path / "cache")},
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    site = (out / "conf.d" / "cropper.conf").read_text()
    upstream = re.search(r"upstream cropper_app \{(.*?)\}", site, re.S).group(1)
    idle = re.search(r"keepalive_timeout (\d+)s;", upstream)
    gunicorn = re.search(r"^keepalive = (\d+)$", (ROOT / "cropper" / "ops" / "gunicorn_settings.py").read_text(), re.M)
    assert idle and gunicorn and int(idle.group(1)) < int(gunicorn.group(1))  # (importing the conf sets metrics up)


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_dockerfiles_pass_hadolint(dockerfile):
    binary = tool_or_skip("hadolint", str(ROOT / ".venv/bin"))
    result = subprocess.run([binary, str(ROOT / dockerfile)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_runs_as_non_root_with_dependencies_in_their_own_layer():
    lines = [line for line in (ROOT / "Dockerfile").read_text().splitlines() if line and not line.startswith("#")]
    users = [line for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("USER root", "USER 0")
    copy_requirements = next(i for i, line in enumerate(lines) if line.startswith("COPY requirements.txt "))
    copy_code = next(i for i, line in enumerate(lines) if line.startswith("COPY cropper/"))
    assert copy_requirements < next(i for i, line in enumerate(lines) if "pip install" in line) < copy_code
    assert lines[-1].startswith("ENTRYPOINT") and "gunicorn" in lines[-1]


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_every_image_builds_from_a_base_the_compose_files_can_replace(dockerfile, compose_dir, cluster_dir):
    """BASE_IMAGE is each Dockerfile's first FROM, defaulting to a bookworm image from a registry; the compose
    files pass it on, so one variable builds every image from a Debian base made without a registry."""
    text = (ROOT / dockerfile).read_text()
    default = re.search(r"^ARG BASE_IMAGE=(\S+)$", text, re.M)
    assert default and "bookworm" in default.group(1)
    assert re.findall(r"^FROM (\S+)", text, re.M)[0] == "${BASE_IMAGE}"
    base = {"BASE_IMAGE": "cropper-base:bookworm"}
    services = {**compose_services(compose_dir, "docker-compose.yml", env=base),
                **cluster_services(cluster_dir, env={**CLUSTER_SECRETS, **base})}
    built = [service["build"] for service in services.values() if "build" in service
             and Path(service["build"]["context"], service["build"].get("dockerfile", "Dockerfile")).resolve()
             == (ROOT / dockerfile).resolve()]
    assert built and all(build["args"]["BASE_IMAGE"] == "cropper-base:bookworm" for build in built)


def test_the_app_images_user_can_make_the_folders_gunicorn_makes_at_start(compose_dir):
    """Gunicorn makes METRICS_DIR (wiping it) before it serves; in the image it runs as USER, in WORKDIR, which
    root owns. A relative METRICS_DIR (.env.example's) must land in a folder that user owns, or the app never starts."""
    lines = [line for line in (ROOT / "Dockerfile").read_text().splitlines() if line and not line.startswith("#")]
    workdir = Path([line.split()[1] for line in lines if line.startswith("WORKDIR ")][-1])
    user = [line.split()[1] for line in lines if line.startswith("USER ")][-1]
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    owned = [Path(folder) for command in re.findall(rf"chown {re.escape(user)} ([^&\n]+)", text)
             for folder in command.split()]
    environment = compose_services(compose_dir, "docker-compose.yml")["app"]["environment"]
    metrics = workdir / Path(environment.get("METRICS_DIR") or Settings().metrics_dir)
    assert any(folder == metrics or folder in metrics.parents for folder in owned), (metrics, owned)


def run_check_tls(cert, key):
    env = {**os.environ, "CROPPER_TLS_CERT": str(cert), "CROPPER_TLS_KEY": str(key)}
    return subprocess.run(["sh", str(ROOT / "nginx/check-tls.sh")], env=env, capture_output=True, text=True)


def test_check_tls_script_explains_what_is_wrong(tmp_path):
    cert, key = tmp_path / "fullchain.pem", tmp_path / "privkey.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    key.write_text("-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n")
    assert run_check_tls(cert, key).returncode == 0
    missing = run_check_tls(tmp_path / "nope.pem", key)
    assert missing.returncode != 0 and "does not exist" in missing.stderr
    not_pem = run_check_tls(key, key)
    assert not_pem.returncode != 0 and "not PEM" in not_pem.stderr


# -- docker-compose.cluster.yml: a front nginx, three hosts (nginx + Gunicorn), SeaweedFS

CLUSTER_SECRETS = {"CLUSTER_KEY": "a-long-random-secret", "AWS_ACCESS_KEY_ID": "cropper",
                   "AWS_SECRET_ACCESS_KEY": "a-made-up-secret-key"}
HOST_NUMBERS = (1, 2, 3)


@pytest.fixture
def cluster_dir(tmp_path):
    (tmp_path / "cluster").mkdir()
    return deployment_folder(tmp_path / "cluster", "docker-compose.cluster.yml")


def cluster_services(cluster_dir, env=CLUSTER_SECRETS):
    return compose_services(cluster_dir, "docker-compose.cluster.yml", env=env)


def render_with(environment, out, *args):
    """Run the app image's renderer here with the environment compose gives one of its services."""
    return subprocess.run([sys.executable, "-m", "cropper", "nginx-config", *args, str(out)], cwd=out.parent,
                          env={"PATH": os.environ["PATH"],
                               **{k: str(v) for k, v in environment.items() if v is not None}},
                          capture_output=True, text=True, timeout=30)


def test_cluster_compose_file_is_valid_and_refuses_to_start_without_its_secrets(cluster_dir):
    assert compose(cluster_dir, "-f", "docker-compose.cluster.yml", "config", "-q", env=CLUSTER_SECRETS).returncode == 0
    for missing in CLUSTER_SECRETS:
        without = compose(cluster_dir, "-f", "docker-compose.cluster.yml", "config", "-q",
                          env={**CLUSTER_SECRETS, missing: ""})
        assert without.returncode != 0 and missing in without.stderr


def test_cluster_hosts_are_the_hosts_nginx_each_app_one_of_them_and_all_agree(cluster_dir):
    services = cluster_services(cluster_dir)
    hosts = [f"nginx-{n}:80" for n in HOST_NUMBERS]
    apps = [services[f"app-{n}"]["environment"] for n in HOST_NUMBERS]
    front = services["front-config"]["environment"]
    for n, app in zip(HOST_NUMBERS, apps):
        assert app["CLUSTER_HOSTS"].split(",") == hosts == front["CLUSTER_HOSTS"].split(",")
        assert app["CLUSTER_SELF"] == f"nginx-{n}:80"  # its own nginx, which fronts it:
        assert services[f"nginx-config-{n}"]["environment"]["NGINX_UPSTREAM"] == app["GUNICORN_BIND"]
        assert f"run-{n}:{socket_folder(app)}:ro" in services[f"nginx-{n}"]["volumes"]  # its socket, shared
        assert services[f"nginx-config-{n}"]["environment"]["NGINX_LISTEN"] == "80 default_server"
        assert app["CLUSTER_KEY"] == CLUSTER_SECRETS["CLUSTER_KEY"] and app["CACHE_BACKEND"] == "s3"
        assert app["S3_ENDPOINT_URL"] == "http://seaweedfs:8333"
        assert app["AWS_ACCESS_KEY_ID"] == CLUSTER_SECRETS["AWS_ACCESS_KEY_ID"]
        assert services[f"app-{n}"]["depends_on"]["store-init"]["condition"] == "service_completed_successfully"
    assert len({app["CLUSTER_SELF"] for app in apps}) == 3
    assert [str(app.get("S3_PRUNER", "false")).lower() for app in apps] == ["true", "false", "false"]  # one pruner
    sources = [services[f"app-{n}"]["volumes"][0] for n in HOST_NUMBERS]
    assert len({volume.split(":")[0] for volume in sources}) == 3  # image sources stay each host's own
    assert all(volume.endswith(":/var/cache/cropper:rw") for volume in sources)
    # Only what writes to the store (or is it) holds its credentials.
    holders = {name for name, service in services.items() if "AWS_SECRET_ACCESS_KEY" in service.get("environment", {})}
    assert holders == {"seaweedfs", "store-init", "app-1", "app-2", "app-3"}


def test_the_cluster_runs_the_images_built_here_and_starts_in_order(cluster_dir):
    services = cluster_services(cluster_dir)
    assert services["seaweedfs"]["build"]["dockerfile"] == "docker/seaweedfs/Dockerfile"
    assert services["seaweedfs"]["command"][0] == "mini" and "-dir=/data" in services["seaweedfs"]["command"]
    assert services["store-init"]["entrypoint"] == ["cropper", "store", "init"]
    assert services["store-init"]["depends_on"]["seaweedfs"]["condition"] == "service_healthy"
    assert services["front-config"]["entrypoint"] == ["cropper", "nginx-config", "--front", "/etc/cropper-nginx"]
    for name in ("front", *(f"nginx-{n}" for n in HOST_NUMBERS)):
        nginx = services[name]
        renderer = "front-config" if name == "front" else f"nginx-config-{name[-1]}"
        assert nginx["build"]["context"] == str(cluster_dir / "nginx")  # Debian's nginx (nginx/Dockerfile)
        assert nginx["command"] == ["nginx", "-c", "/etc/cropper-nginx/nginx.conf"]
        assert nginx["depends_on"][renderer]["condition"] == "service_completed_successfully"
        assert services[renderer]["build"] == services["app-1"]["build"]
        assert f"{renderer}:/etc/cropper-nginx:ro" in nginx["volumes"]
        assert f"{renderer}:/etc/cropper-nginx:rw" in services[renderer]["volumes"]
    assert {f"nginx-{n}" for n in HOST_NUMBERS} <= set(services["front"]["depends_on"])
    published = [name for name, service in services.items() if service.get("ports")]
    assert published == ["front"]  # the hosts, their apps and the store are reached inside the network only


def test_the_cluster_renderings_are_the_tested_ones_with_dockers_values(cluster_dir, tmp_path):
    services = cluster_services(cluster_dir)
    front_address = services["front"]["networks"]["front"]["ipv4_address"]
    for n in HOST_NUMBERS:
        out = tmp_path / f"host{n}"
        result = render_with(services[f"nginx-config-{n}"]["environment"], out)
        assert result.returncode == 0, result.stderr
        http = (out / "conf.d" / "cropper.conf").read_text()
        assert "server unix:/run/cropper/gunicorn.sock max_fails=0;" in http  # the socket only this nginx mounts
        # Looked up when nginx starts: Debian's nginx (1.22) has no "resolve".
        assert "upstream cropper_store { server seaweedfs:8333 max_fails=0; keepalive 16; }" in http
        assert "resolve" not in http
        assert 'proxy_cache_path "/var/cache/nginx/store-cache" ' in http
        # X-Forwarded-For is believed from the front's own address, nothing wider.
        assert re.findall(r"set_real_ip_from ([^;]+);", http) == [f"{front_address}/32"]
        assert "real_ip_header X-Forwarded-For;" in http
        files = (out / "conf.d" / "snippets" / "cropper-files.conf").read_text()
        assert "proxy_pass http://$cropper_store/cropper-crops$uri;" in files  # store mode, the bucket's path
        # the app's breaker, which its nginx must see: the app's cache volume, mounted where the config names it
        assert 'if (-f "/var/cache/cropper/store-unreachable")' in (
            out / "conf.d" / "snippets" / "cropper-store.conf").read_text()
        assert f"sources-{n}:/var/cache/cropper:ro" in services[f"nginx-{n}"]["volumes"]
        assert "user www-data;" in (out / "nginx.conf").read_text()
    out = tmp_path / "front"
    result = render_with(services["front-config"]["environment"], out, "--front")
    assert result.returncode == 0, result.stderr
    front = (out / "conf.d" / "front.conf").read_text()
    assert "hash $cropper_image consistent;" in front and "listen 80 default_server;" in front
    assert "resolve" not in front
    servers = [line.split()[1] for line in front.splitlines() if line.strip().startswith("server nginx-")]
    assert servers == [f"nginx-{n}:80" for n in HOST_NUMBERS]  # CLUSTER_HOSTS, in its order: the apps' ring
    assert all(line.strip().endswith(" max_fails=1 fail_timeout=10s;") for line in front.splitlines()
               if line.strip().startswith("server nginx-"))
    assert "/var/log/cropper/front.log" in front


def socket_folder(app_environment):
    """The folder of the Unix socket an app's Gunicorn listens on (GUNICORN_BIND=unix:...)."""
    bind = app_environment["GUNICORN_BIND"]
    assert bind.startswith("unix:"), bind
    return str(Path(bind[len("unix:"):]).parent)


# -- who reaches Gunicorn, and whose X-Forwarded-For is believed. Gunicorn takes the client from the last
# X-Forwarded-For entry of whoever connects (TRUSTED_PROXIES=1): a container that reached it could name an
# allowed address and read /metrics or pass the rate limits. tests/docker/ tries it in the started stacks.

def test_only_nginx_shares_a_network_with_the_app(compose_dir):
    services = compose_services(compose_dir, "docker-compose.yml")
    app = services["app"]
    assert app["environment"]["TRUSTED_PROXIES"] == "1" and not app.get("ports")
    assert set(app["networks"]) == {"backend"}
    assert {name for name, service in services.items() if "backend" in (service.get("networks") or {})} == \
        {"app", "nginx"}
    assert services["nginx-config"]["network_mode"] == "none"  # it only writes files


def test_no_container_reaches_a_cluster_hosts_gunicorn_over_a_network(cluster_dir):
    services = cluster_services(cluster_dir)
    for n in HOST_NUMBERS:
        app = services[f"app-{n}"]
        assert not app.get("ports") and not app.get("expose")
        socket_folder(app["environment"])  # a Unix socket, no TCP port
        mounts = {name for name, service in services.items()
                  for volume in service.get("volumes", []) if volume.startswith(f"run-{n}:")}
        assert mounts == {f"app-{n}", f"nginx-{n}"}  # its own nginx alone reaches the socket


def test_the_hosts_believe_x_forwarded_for_from_the_front_alone(cluster_dir):
    services = cluster_services(cluster_dir)
    front = services["front"]["networks"]["front"]["ipv4_address"]
    for n in HOST_NUMBERS:
        assert services[f"nginx-config-{n}"]["environment"]["NGINX_REAL_IP_FROM"] == f"{front}/32"
    assert {name for name, service in services.items() if "front" in (service.get("networks") or {})} == \
        {"front", *(f"nginx-{n}" for n in HOST_NUMBERS)}


def test_the_installed_package_carries_every_nginx_template():
    """The image installs the package (pip install .): its package-data must name every template the renderer reads."""
    import tomllib

    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    carried = set()  # setuptools' globs, each from its package's folder
    for package_name, patterns in setuptools["package-data"].items():
        folder = ROOT.joinpath(*package_name.split("."))
        carried |= {path for pattern in patterns for path in folder.glob(pattern)}
    package = ROOT / "cropper"
    templates = sorted((package / "ops" / "nginx_templates").rglob("*.template"))
    assert templates
    missing = [str(path.relative_to(package)) for path in templates if path not in carried]
    assert not missing, f"pyproject.toml's package-data leaves out {missing}: the Docker image would lack them"


def test_the_built_package_holds_every_module_template_and_page_file(tmp_path):
    """pip install . (the Docker image) installs what a wheel of the package holds: every subpackage's modules
    (a package list by hand would leave a new subpackage out), nginx's templates and the page."""
    context = tmp_path / "context"  # what the Dockerfile copies in, built away from the work tree
    context.mkdir()
    for name in ("pyproject.toml", "README.md", "cropper"):
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, context / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / name, context / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(context)],
                   check=True, capture_output=True, timeout=120)
    (wheel,) = tmp_path.glob("fathomnet_cropper-*.whl")
    held = set(zipfile.ZipFile(wheel).namelist())
    package = ROOT / "cropper"
    wanted = [path for pattern in ("*.py", "*.template", "static/**/*") for path in package.rglob(pattern)
              if path.is_file() and "__pycache__" not in path.parts]
    missing = [str(path.relative_to(ROOT)) for path in wanted if path.relative_to(ROOT).as_posix() not in held]
    assert not missing, f"the built package leaves out {missing[:10]}"
