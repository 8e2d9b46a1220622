"""Who owns a running job, and whether that owner is still alive: owner ids and leases.

A job's owner is `HOST:PID:NAMESPACE:TOKEN`. HOST and PID are for people reading the
record; TOKEN (random, one per run) makes two runs of one process distinct; NAMESPACE names
the pid namespace of one boot of one kernel (a hash of the kernel's boot id and the
namespace's inode). Only an owner in the reader's own NAMESPACE can be declared dead by a
pid check, and then at once: a server restarted on the same machine takes its killed pool's
jobs over without waiting. Everyone else -- another host, another container with the same
hostname (host networking), a cloned VM -- is judged by its lease alone: the owner renews
`lease_expires_at` (now + `job_stale_seconds`) with every heartbeat, and a job past its lease
is taken over. Leases compare the clocks of the writer and the reader: hosts keep theirs in
step (NTP) far better than the lease's seconds.
"""

from __future__ import annotations

import hashlib
import os
import socket
import uuid
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path

from tilewright.config import Settings
from tilewright.jobs.models import Job
from tilewright.staging import pid_alive


@lru_cache(maxsize=1)
def namespace() -> str:
    """This process's pid namespace on this boot of this kernel (8 hex digits)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        pid_ns = os.readlink("/proc/self/ns/pid")
    except OSError:  # no /proc (not Linux): a namespace no other process shares, so only leases count
        return uuid.uuid4().hex[:8]
    return hashlib.sha256(f"{boot}\0{pid_ns}".encode()).hexdigest()[:8]


def worker_id() -> str:
    """A new owner id for one run of a job in this process."""
    return f"{socket.gethostname()}:{os.getpid()}:{namespace()}:{uuid.uuid4().hex[:8]}"


def owner_gone(worker: str | None) -> bool:
    """True only when certain: no owner, or an owner in this pid namespace whose process has exited."""
    if not worker:
        return True
    parts = worker.split(":")
    if len(parts) != 4 or parts[2] != namespace() or not parts[1].isdigit():
        return False  # elsewhere, or an id from before namespaces were recorded: the lease decides
    return not pid_alive(int(parts[1]))


def lease_until(settings: Settings, now: datetime) -> datetime:
    """The lease a heartbeat written `now` grants."""
    return now + timedelta(seconds=settings.job_stale_seconds)


def lease_expired(job: Job, settings: Settings, now: datetime) -> bool:
    # a row from before revision 0002_jobs_lease has no lease: its last heartbeat stands in
    expires = job.lease_expires_at or lease_until(settings, job.heartbeat_at or job.started_at or job.created_at)
    return expires < now


def is_dead(job: Job, settings: Settings, now: datetime) -> bool:
    """Whether a running job's owner is gone: its process has exited (same namespace) or its lease ran out."""
    return owner_gone(job.worker) or lease_expired(job, settings, now)
