"""The shared store's breaker: one file every process of a host sees, and one prober per host.

The probe here is a plain function a test controls (the S3 store's, against a frozen SeaweedFS, is
in test_s3.py). Tests that fork leave the child only through os._exit.
"""

import os
import threading
import time

from cropper.storage.breaker import OPEN_FILE, StoreBreaker
from cropper.storage.locks import Locks
from devtools.servers import wait_until


def locks(tmp_path):
    """The host's locks: every breaker of one host (each process's) has the same."""
    return Locks(tmp_path / "locks", timeout=1)


class Probe:
    """A probe that answers what the test says, and records when each call began and ended."""

    def __init__(self, reachable=False, takes=0.0):
        self.reachable, self.takes = reachable, takes
        self.calls = []
        self._lock = threading.Lock()

    def __call__(self):
        began = time.monotonic()
        time.sleep(self.takes)
        with self._lock:
            self.calls.append((began, time.monotonic()))
        return None if self.reachable else "it did not answer in time"


def test_a_closed_breaker_is_one_missing_file_and_never_probes(tmp_path):
    probe = Probe(reachable=True)
    breaker = StoreBreaker(tmp_path / OPEN_FILE, probe, locks(tmp_path), every=0.01)
    for _ in range(100):
        assert breaker.outage() is None
    time.sleep(0.1)
    assert probe.calls == [] and not (tmp_path / OPEN_FILE).exists()


def test_a_trip_in_one_process_opens_it_for_every_other_process_of_the_host(tmp_path):
    path = tmp_path / OPEN_FILE
    here = StoreBreaker(path, Probe(), locks(tmp_path), every=0.05)
    pid = os.fork()
    if pid == 0:  # another Gunicorn worker of the host
        try:
            StoreBreaker(path, Probe(), locks(tmp_path), every=0.05).trip("it did not answer in time")
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    outage = here.outage()
    assert outage is not None and outage.why == "it did not answer in time"
    assert abs(outage.since - time.time()) < 5
    assert path.read_text().endswith("\nit did not answer in time")  # whole: nginx checks it too


def test_the_prober_closes_it_once_the_store_answers_and_not_before(tmp_path):
    probe = Probe(reachable=False)
    breaker = StoreBreaker(tmp_path / OPEN_FILE, probe, locks(tmp_path), every=0.05)
    breaker.trip("it did not answer in time")
    assert wait_until(lambda: len(probe.calls) >= 3, timeout=5)  # in the background, again and again
    assert breaker.outage() is not None
    probe.reachable = True
    assert wait_until(lambda: breaker.outage() is None, timeout=5)
    probed = len(probe.calls)
    time.sleep(0.3)
    assert len(probe.calls) == probed  # closed: no more probes


def test_a_second_trip_keeps_the_first_time(tmp_path):
    breaker = StoreBreaker(tmp_path / OPEN_FILE, Probe(takes=0.05), locks(tmp_path), every=0.05)
    breaker.trip("it could not be connected to or broke off")
    first = breaker.outage()
    time.sleep(0.05)
    breaker.trip("it did not answer in time")
    assert breaker.outage() == first


def test_one_prober_per_host_however_many_processes_see_the_breaker_open(tmp_path):
    """Each worker that sees it open keeps a prober; only the one holding the host's probe lock asks."""
    path = tmp_path / OPEN_FILE
    log = tmp_path / "probes"

    def probe():
        with open(log, "a") as out:
            out.write(f"{os.getpid()} begin {time.monotonic()}\n")
        time.sleep(0.05)
        with open(log, "a") as out:
            out.write(f"{os.getpid()} end {time.monotonic()}\n")
        return "it did not answer in time"

    StoreBreaker(path, probe, locks(tmp_path), every=0.01).trip("it did not answer in time")
    children = []
    for _ in range(3):
        pid = os.fork()
        if pid == 0:
            try:
                child = StoreBreaker(path, probe, locks(tmp_path), every=0.01)
                child.outage()  # sees it open: starts a prober of its own
                time.sleep(1)
            finally:
                os._exit(0)
        children.append(pid)
    for pid in children:
        os.waitpid(pid, 0)
    StoreBreaker(path, Probe(), locks(tmp_path)).close()
    began, probes = {}, []
    for line in log.read_text().splitlines():
        pid, event, when = line.split()
        if event == "begin":
            began[pid] = float(when)
        else:
            probes.append((began.pop(pid), float(when)))  # a child's last may have begun and never ended
    probes.sort()
    assert len(probes) >= 10
    assert all(earlier[1] <= later[0] for earlier, later in zip(probes, probes[1:]))  # never two at once


def test_probe_now_closes_or_opens_it_at_once(tmp_path):
    probe = Probe(reachable=False)
    breaker = StoreBreaker(tmp_path / OPEN_FILE, probe, locks(tmp_path), every=10)
    assert breaker.probe_now() == "it did not answer in time" and breaker.outage() is not None
    probe.reachable = True
    assert breaker.probe_now() is None and breaker.outage() is None


def test_a_folder_it_cannot_write_leaves_it_closed_and_says_so(tmp_path, caplog):
    (tmp_path / "a file").write_text("not a folder")
    breaker = StoreBreaker(tmp_path / "a file" / OPEN_FILE, Probe(), locks(tmp_path), every=0.05)
    breaker.trip("it did not answer in time")
    assert breaker.outage() is None
    assert "cannot open the crop store's breaker" in caplog.text
