"""How far behind the job queue is, read from procrastinate's tables at one moment:
jobs by state, and how long the oldest due job has waited. Cheap enough for every
metrics scrape: counts over the partial index of live jobs, and one lookup for the
oldest (the lowest id among due jobs: ids grow as jobs are deferred)."""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg

# A job is due when it may run now; "scheduled" ones wait for a retry's time.
_COUNTS = """
SELECT count(*) FILTER (WHERE status = 'todo' AND (scheduled_at IS NULL OR scheduled_at <= now())) AS due,
       count(*) FILTER (WHERE status = 'todo' AND scheduled_at > now()) AS scheduled,
       count(*) FILTER (WHERE status = 'doing') AS doing
FROM procrastinate_jobs WHERE status IN ('todo', 'doing')
"""
# Waiting since it was deferred, or since its retry became due, whichever is later.
_OLDEST = """
SELECT extract(epoch FROM now() - greatest(j.scheduled_at,
       (SELECT min(e.at) FROM procrastinate_events e WHERE e.job_id = j.id AND e.type = 'deferred')))
FROM procrastinate_jobs j
WHERE j.status = 'todo' AND (j.scheduled_at IS NULL OR j.scheduled_at <= now())
ORDER BY j.id LIMIT 1
"""


@dataclass(frozen=True)
class Backlog:
    depth: dict[str, int] = field(default_factory=dict)  # due, scheduled, doing
    oldest_age_s: float | None = None  # None: no job is due


async def read(conn: asyncpg.Connection) -> Backlog:
    counts = await conn.fetchrow(_COUNTS)
    oldest = await conn.fetchval(_OLDEST) if counts["due"] else None
    return Backlog({k: int(counts[k]) for k in ("due", "scheduled", "doing")},
                   max(float(oldest), 0.0) if oldest is not None else None)
