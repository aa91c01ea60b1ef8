"""Files the client saves: written beside their place under a temporary name, then renamed whole."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def written_aside(path: Path) -> Iterator[BinaryIO]:
    """A file to write path's bytes to; it replaces path when the block ends, and goes if the block fails.

    It is created as open() creates any file, so the umask decides who may read it: tempfile's files are
    0600 whatever the umask, and a colleague or a training job under another account could not read them.
    """
    temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.part")
    try:
        with open(temp, "xb") as out:
            yield out
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
