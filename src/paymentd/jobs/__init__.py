"""Background work on procrastinate (a PostgreSQL-backed job queue): applying webhook
events, the reconciler sweep and housekeeping. `queue.Jobs` is the queue; `tasks`
the work; `reconciler` the sweep that finds what fell through the cracks."""
