"""Following a data-set job over HTTP, as a client does: its answer now, and its answer once it has ended."""

import requests

from devtools.servers import wait_until


def job_answer(base_url, job_id, timeout=30):
    return requests.get(f"{base_url}/datasets/{job_id}", timeout=timeout).json()


def finished_job(base_url, job_id, seconds=240):
    """The job's answer once it is no longer queued or running (done, failed or cancelled)."""
    answer = {}

    def ended():
        nonlocal answer
        answer = job_answer(base_url, job_id)
        return answer.get("status") not in ("queued", "running")

    assert wait_until(ended, timeout=seconds), answer
    return answer
