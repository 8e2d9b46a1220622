"""Which queued jobs to send to the broker again: the ones whose message may have been lost.

A message is lost when the broker restarts without persisting it (Redis `--save ''`), when a
submit happens during an outage, or when a worker dies between taking the message and claiming
the job. The job record still says `queued`, so the server's recovery loop passes `store.waiting_jobs`
to `Resender.due`: a job waiting (since it was created, became due or was last sent) longer than `first` seconds is
sent again, and each further resend of the same job waits twice as long, at most `longest`. A job
that waits only because every worker is busy is thus sent a handful of times, not once per tick;
a duplicate message is harmless (the claim in the database lets one delivery run it).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from tilewright.jobs.models import utcnow

LONGEST = 3600.0


class Resender:
    """Remembers what this process sent and when, and says which waiting jobs to send again."""

    def __init__(self, first: float, longest: float = LONGEST) -> None:
        self.first, self.longest = first, longest
        self._sent: dict[str, tuple[datetime, int]] = {}  # job id -> (last sent, resends so far)

    def sent(self, job_id: str) -> None:
        _, count = self._sent.get(job_id, (utcnow(), -1))
        self._sent[job_id] = (utcnow(), count + 1)

    def due(self, waiting: list[tuple[str, datetime]]) -> list[str]:
        now = utcnow()
        still = {job_id for job_id, _ in waiting}
        self._sent = {i: v for i, v in self._sent.items() if i in still}  # forget the jobs that started
        chosen = []
        for job_id, since in waiting:
            last, count = self._sent.get(job_id, (since, 0))
            wait = min(self.longest, self.first * 2 ** max(0, count))
            if now - max(since, last) >= timedelta(seconds=wait):
                chosen.append(job_id)
        return chosen
