"""The deployment files: docker-compose.yml, the Dockerfile and nginx's templates agree with each other.

No Docker daemon runs here, so containers are not started: compose files are validated by
Debian's docker-compose (which needs no daemon) and the Dockerfile is linted by hadolint.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

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


def test_compose_mounts_the_templates_the_tests_run_and_sets_every_value(compose_dir):
    text = compose(compose_dir, "-f", "docker-compose.yml", "-f", "docker-compose.tls.yml", "config",
                   env={"TLS_CERT_DIR": "/etc/ssl"}).stdout
    assert "nginx/templates:/etc/nginx/templates:ro" in text
    assert "nginx/docker.conf:/etc/nginx/nginx.conf:ro" in text
    used = set()
    for template in (ROOT / "nginx").rglob("*.template"):
        used |= set(re.findall(r"\$\{(CROPPER_[A-Z_]+)\}", template.read_text()))
    # local.conf.template is for runs outside Docker only
    used -= set(re.findall(r"\$\{(CROPPER_[A-Z_]+)\}", (ROOT / "nginx/local.conf.template").read_text()))
    missing = sorted(name for name in used if f"{name}:" not in text)
    assert missing == []


def test_docker_conf_includes_only_the_cropper_configs():
    text = (ROOT / "nginx/docker.conf").read_text()
    assert "include /etc/nginx/conf.d/cropper*.conf;" in text and "default.conf" not in text


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
    assert copy_requirements < next(i for i, l in enumerate(lines) if "pip install" in l) < copy_code
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
