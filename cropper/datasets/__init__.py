"""Data-set jobs: training sets built from FathomNet's annotations (docs/datasets.md).

    request.py      the body of POST /datasets, normalised into a DatasetRequest
    jobs.py         job records and their lifecycle (queued, running, done, failed, cancelled), with leases
    queue.py        the queue the worker takes jobs from (Huey)
    build.py        what a job does: list, split, crop, write
    imagefolder.py  the zip in Hugging Face's imagefolder layout
    worker.py       the worker process Gunicorn's arbiter starts beside the workers

`Datasets` is what the web API asks of them.
"""

import difflib

from ..errors import DatasetsUnavailableError, UnknownConceptError


class Datasets:
    """Data-set jobs as the web API sees them: submit one, read one, cancel or remove one."""

    def __init__(self, jobs, store, sources, unavailable=None):
        self.jobs = jobs  # jobs.Jobs
        self.store = store  # a storage.DatasetStore
        self.sources = sources  # ImageSources: the concept names a request may use
        self.unavailable = unavailable  # why this host takes no jobs (a misconfiguration), or None

    def submit(self, request):
        """(job, whether it is new) for a DatasetRequest whose concepts FathomNet knows, else UnknownConceptError."""
        if self.unavailable:
            raise DatasetsUnavailableError(self.unavailable)
        check_concepts(request.concepts, self.sources.concepts())
        return self.jobs.submit(request)

    def get(self, job_id):
        return self.jobs.get(job_id)

    def cancel(self, job_id):
        return self.jobs.cancel(job_id, remove_files=lambda job: self.store.remove(job.id))

    def readiness_problem(self, fresh_within):
        """None if this host's worker has reported within fresh_within seconds (and a shared queue answers), else
        why not."""
        if self.unavailable:
            return self.unavailable
        problem = self.jobs.store.readiness_problem()
        if problem:
            return problem
        age = self.jobs.store.heartbeat_age()
        if age is None:
            return "the data-set worker has not started (python -m cropper datasets worker)"
        if age > fresh_within:
            return f"the data-set worker has not reported for {age:.0f} s"
        return None


def check_concepts(asked, known):
    """Refuse names FathomNet does not know, before any work starts; names are exact (case too)."""
    known_set = set(known)
    unknown = [name for name in asked if name not in known_set]
    if not unknown:
        return
    by_case = {name.lower(): name for name in known}
    suggestions = {}
    for name in unknown:
        exact = by_case.get(name.lower())
        close = difflib.get_close_matches(name, known, n=5, cutoff=0.6)
        suggestions[name] = [exact] + [c for c in close if c != exact] if exact else close
    first = unknown[0]
    hint = f" Did you mean {', '.join(repr(s) for s in suggestions[first][:3])}?" if suggestions[first] else ""
    raise UnknownConceptError(f"FathomNet has no concept named {first!r} (names are exact).{hint}",
                              unknown=unknown, suggestions=suggestions)
