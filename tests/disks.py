"""Small disks of a test's own, to fill or make read-only: a tmpfs mounted for the test (root only).

"Full" and "read-only" are then real kernel answers (ENOSPC, EROFS), not mocks.
"""

import os
import subprocess
from contextlib import contextmanager

import pytest

from devtools.servers import wait_until

MIB = 1024 * 1024


@contextmanager
def small_disk(folder, size_mib):
    """A tmpfs of size_mib at folder for the duration."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs to fill needs root")
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mib}m", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def remount(folder, mode):
    """Remount read-only or read-write; a file still open for writing (pixels stored after an answer) makes
    the kernel refuse read-only for a moment, so try again for a while."""
    command = ["mount", "-o", f"remount,{mode}", str(folder)]
    assert wait_until(lambda: subprocess.run(command, capture_output=True).returncode == 0, timeout=10), command


def fill(folder, leave_bytes=0):
    """Fill the disk under folder with a file that is not the cache's, leaving about leave_bytes free."""
    filler = folder / "filler"
    with open(filler, "wb") as out:
        while os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize > leave_bytes + MIB:
            out.write(b"\0" * MIB)
        try:
            while os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize > leave_bytes:
                out.write(b"\0" * 4096)
                out.flush()
        except OSError:
            pass
    return filler
