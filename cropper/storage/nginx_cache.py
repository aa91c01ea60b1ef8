"""nginx's local cache of the crops it reads from the shared store (CACHE_BACKEND=s3): an image's entries removed.

nginx keeps each crop it read from the store for STORE_CACHE_VALID seconds, then asks the store again.
Open-source nginx has no purge of its own, but a cache file that is gone is a miss to it: it reads
the crop from the store again (and, the store having none, the app answers). So a purge removes the
files whose key, the crop's URL path nginx writes near each file's start ("\\nKEY: /crops/...\\n"),
names the image. Where the app cannot reach the folder (nginx in a container of its own), nothing
is removed here, and nginx asks the store again within STORE_CACHE_VALID.
"""

import os
import re

from . import Removed, check_uuid

KEY_MARK = b"\nKEY: "
HEAD_BYTES = 4096  # nginx's header before the key is a few hundred bytes; the key is a URL path
CACHE_FILE = re.compile(r"[0-9a-f]{32}")  # the md5 of a key; nginx's temp files have a suffix


class NginxCache:
    """The folder nginx keeps crops read from the store in (STORE_CACHE_DIR)."""

    def __init__(self, folder):
        self.folder = folder

    def reachable(self):
        return os.path.isdir(self.folder) and os.access(self.folder, os.R_OK | os.W_OK | os.X_OK)

    def remove_image(self, uuid):
        """Remove nginx's copies of every crop of an image: what was removed, or None if the folder is not ours
        to reach."""
        check_uuid(uuid)
        if not self.reachable():
            return None
        names_it = f"/{uuid}/".encode()
        removed = Removed()
        for dirpath, _, names in os.walk(self.folder):
            for name in names:
                if not CACHE_FILE.fullmatch(name):
                    continue
                path = os.path.join(dirpath, name)
                try:
                    with open(path, "rb") as file:
                        head = file.read(HEAD_BYTES)
                        size = os.fstat(file.fileno()).st_blocks * 512
                    if names_it in head.partition(KEY_MARK)[2].partition(b"\n")[0]:
                        os.unlink(path)
                        removed += Removed(1, size)
                except FileNotFoundError:  # nginx's cache manager removed it meanwhile
                    continue
        return removed
