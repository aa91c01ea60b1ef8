"""Total time limits for HTTP calls made with requests.

requests' timeouts bound each socket read, so a peer that trickles a byte every few seconds (in
its headers or its body) keeps a call going for as long as it likes, and a TLS handshake may take
the whole connect timeout. Here a call gets a deadline: a watchdog thread shuts down the sockets
the call is using, from the first (handshake included), once the deadline passes, which makes the
blocked read fail at once, and the caller reports a timeout. (Name lookups are not covered:
getaddrinfo cannot be interrupted.)

    session.mount("https://", DeadlineAdapter(...))
    with deadline(10) as call:
        response = session.get(url)      # and reading its body
    if call.expired: ...
"""

import heapq
import itertools
import os
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
        self._watched = {}  # descriptor of a connection -> our duplicate of it
        self._lock = threading.Lock()

    def watch(self, sock):
        """Watch sock's connection, through a duplicate of its descriptor.

        TLS wraps a new socket object around the descriptor and detaches the first, which then
        can no longer be shut down; a duplicate still reaches the connection, handshake included.
        """
        with self._lock:
            if self._done or sock.fileno() < 0 or sock.fileno() in self._watched:
                return
            duplicate = socket.socket(fileno=os.dup(sock.fileno()))
            self._watched[sock.fileno()] = duplicate
            if self.expired:
                _shut(duplicate)

    def expire(self):
        with self._lock:
            if self._done:
                return
            self.expired = True
            for duplicate in self._watched.values():
                _shut(duplicate)

    def finish(self):
        with self._lock:
            self._done = True
            for duplicate in self._watched.values():
                duplicate.close()
            self._watched.clear()


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


def _watch(sock):
    call = getattr(_current, "call", None)
    if call is not None and sock is not None:
        call.watch(sock)


class _Watched:
    """A connection watched from its first socket (connect, TLS handshake), or when reused from the pool."""

    def _new_conn(self):
        sock = super()._new_conn()
        _watch(sock)
        return sock

    def getresponse(self, *args, **kwargs):
        _watch(self.sock)  # a kept-alive connection made during an earlier call
        return super().getresponse(*args, **kwargs)


class _WatchedHTTPConnection(_Watched, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_Watched, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class DeadlineAdapter(HTTPAdapter):
    """An HTTPAdapter whose connections obey the deadline() of the calling thread."""

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
