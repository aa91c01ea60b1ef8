"""The deployment files: docker-compose.yml, the Dockerfile and nginx's rendered config agree with each other.

No Docker daemon runs here, so containers are not started: compose files are validated by
Debian's docker-compose (which needs no daemon) and the Dockerfile is linted by hadolint.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def tool_or_skip(name, *extra_dirs):
    for folder in ("", *extra_dirs):
        found = shutil.which(name, path=folder or None)
        if found:
            return found
    if os.environ.get("CI"):
        raise RuntimeError(f"{name} is missing; .ci/setup should have installed it")
    pytest.skip(f"{name} is not installed")


@pytest.fixture
def compose_dir(tmp_path):
    """The compose files beside a .env made from .env.example, as a deployment would have them."""
    for name in ("docker-compose.yml", "docker-compose.tls.yml"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copy(ROOT / ".env.example", tmp_path / ".env")
    return tmp_path


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
    assert "user nginx;" in main and f"include {out}/conf.d/*.conf;" in main
    site = (out / "conf.d" / "cropper.conf").read_text()
    assert "listen 80 default_server;" in site
    assert "resolver 127.0.0.11 valid=10s ipv6=off; server app:8000 resolve max_fails=0;" in site
    locations = (out / "conf.d" / "snippets" / "cropper-locations.conf").read_text()
    assert "root /var/cache/cropper;" in locations and "/var/log/cropper/access.log" in locations
    assert "ssl_certificate /etc/nginx/tls/fullchain.pem;" in (out / "conf.d" / "tls.conf").read_text()


def test_dockerfile_passes_hadolint():
    binary = tool_or_skip("hadolint", str(ROOT / ".venv/bin"))
    result = subprocess.run([binary, str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_runs_as_non_root_with_dependencies_in_their_own_layer():
    lines = [line for line in (ROOT / "Dockerfile").read_text().splitlines() if line and not line.startswith("#")]
    users = [line for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("USER root", "USER 0")
    copy_requirements = lines.index("COPY requirements.txt .")
    copy_code = next(i for i, line in enumerate(lines) if line.startswith("COPY cropper/"))
    assert copy_requirements < next(i for i, line in enumerate(lines) if "pip install" in line) < copy_code
    assert lines[-1].startswith("ENTRYPOINT") and "gunicorn" in lines[-1]


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
