"""Total time limits for HTTP calls made with requests.

requests' timeouts bound each socket read, so a peer that trickles a byte every few seconds (in
its headers or its body) keeps a call going for as long as it likes. Here a call gets a deadline:
a watchdog thread shuts down the sockets the call is using once the deadline passes, which makes
the blocked read fail at once, and the caller reports a timeout.

    session.mount("https://", DeadlineAdapter(...))
    with deadline(10) as call:
        response = session.get(url)      # and reading its body
    if call.expired: ...
"""

import heapq
import itertools
import socket
import threading
import time
from contextlib import contextmanager

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_current = threading.local()


class Call:
    """One bounded call: the sockets it uses, and whether its time ran out."""

    def __init__(self, seconds):
        self.deadline = time.monotonic() + seconds
        self.expired = False
        self._done = False
        self._sockets = []
        self._lock = threading.Lock()

    def watch(self, sock):
        with self._lock:
            if self.expired:
                _shut(sock)
            elif sock not in self._sockets:
                self._sockets.append(sock)

    def expire(self):
        with self._lock:
            if self._done:
                return
            self.expired = True
            for sock in self._sockets:
                _shut(sock)

    def finish(self):
        with self._lock:
            self._done = True
            self._sockets.clear()


def _shut(sock):
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # already closed
        pass


class _Watchdog:
    """One daemon thread per process, started at the first bounded call, expiring calls in deadline order."""

    def __init__(self):
        self._heap = []
        self._order = itertools.count()
        self._wakeup = threading.Condition()
        self._thread = None

    def add(self, call):
        with self._wakeup:
            heapq.heappush(self._heap, (call.deadline, next(self._order), call))
            if self._thread is None or not self._thread.is_alive():  # first call, or after a fork
                self._thread = threading.Thread(target=self._run, name="http-deadlines", daemon=True)
                self._thread.start()
            self._wakeup.notify()

    def _run(self):
        while True:
            with self._wakeup:
                while not self._heap:
                    self._wakeup.wait()
                deadline, _, call = self._heap[0]
                wait = deadline - time.monotonic()
                if wait > 0:
                    self._wakeup.wait(wait)
                    continue
                heapq.heappop(self._heap)
            call.expire()


_watchdog = _Watchdog()


@contextmanager
def deadline(seconds):
    """Bound every HTTP call made in this block (by this thread, through a DeadlineAdapter) to `seconds` in all."""
    call = Call(seconds)
    outer = getattr(_current, "call", None)
    _current.call = call
    _watchdog.add(call)
    try:
        yield call
    finally:
        call.finish()
        _current.call = outer


def _watch_connection(connection):
    call = getattr(_current, "call", None)
    if call is not None and connection.sock is not None:
        call.watch(connection.sock)


class _WatchedHTTPConnection(HTTPConnection):
    def getresponse(self, *args, **kwargs):
        _watch_connection(self)  # from here on the peer sends: headers, then the body
        return super().getresponse(*args, **kwargs)


class _WatchedHTTPSConnection(HTTPSConnection):
    def getresponse(self, *args, **kwargs):
        _watch_connection(self)
        return super().getresponse(*args, **kwargs)


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class DeadlineAdapter(HTTPAdapter):
    """An HTTPAdapter whose connections obey the deadline() of the calling thread."""

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
