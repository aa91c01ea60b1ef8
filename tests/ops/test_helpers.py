"""The processes the arbiter keeps (the pruner, the data-set worker): how long it waits before starting one again,
and how it says it ended."""

import signal
import sys
import time

from cropper.ops import helpers
from cropper.ops.helpers import KeptProcess, ended, next_pause


def test_the_pause_doubles_with_each_quick_death_up_to_a_minute_and_starts_over_after_a_steady_run():
    pauses, pause = [], None
    for ran in (0.5, 3, 0.1, 10, 2, 1, 1, 1, 1):
        pause = next_pause(pause, ran)
        pauses.append(pause)
    assert pauses == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert next_pause(60, helpers.STEADY) == 1


def test_how_it_ended_is_said_in_words():
    assert ended(-signal.SIGKILL) == "was killed by SIGKILL"
    assert ended(1) == "exited with status 1"
    assert ended(0) == "exited"


def test_stop_ends_the_process_and_it_is_not_started_again():
    kept = KeptProcess("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"])
    kept.start()
    started = kept.process
    time.sleep(0.2)
    kept.stop()
    time.sleep(helpers.FIRST_PAUSE + 0.5)  # past the pause a death would be followed by
    assert started.poll() is not None and kept.process is started
