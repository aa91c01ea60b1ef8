"""A real S3-compatible store (SeaweedFS from PyPI, on loopback) for the storage tests."""

import pytest

from devtools.seaweed import SeaweedFS


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory):
    """One SeaweedFS for a test module; tests that stop or freeze it bring it back."""
    server = SeaweedFS(tmp_path_factory.mktemp("seaweed"))
    try:
        server.start()
    except RuntimeError as error:
        server.close()
        pytest.skip(str(error))
    try:
        yield server
    finally:
        server.close()
