"""The service's own source files, for tests that check where an idea is allowed to live."""

from pathlib import Path

import cropper

PACKAGE = Path(cropper.__file__).parent


def package_sources(but):
    """(file name, text) of every module of the package except the one named `but`, its owner."""
    for module in sorted(PACKAGE.glob("*.py")):
        if module.name != but:
            yield module.name, module.read_text()
