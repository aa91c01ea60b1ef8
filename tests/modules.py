"""The service's own source files, for tests that check where an idea is allowed to live."""

from pathlib import Path

import cropper

PACKAGE = Path(cropper.__file__).parent


def package_sources(but):
    """(path below the package, text) of every module of the package, in every subpackage, except the
    owners named by `but`: paths below the package, such as "crops.py" or ("storage/files.py", ...)."""
    owners = {but} if isinstance(but, str) else set(but)
    for module in sorted(PACKAGE.rglob("*.py")):
        name = module.relative_to(PACKAGE).as_posix()
        if name not in owners:
            yield name, module.read_text()
