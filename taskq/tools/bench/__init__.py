"""``taskq bench``: how fast taskq runs against one database, measured end to end.

Everything happens in a schema of its own (``taskq_bench_<random>``), created with
``taskq.migrate`` and dropped at the end, also after an error or Ctrl-C. Worker
processes are real ``taskq worker taskq.tools.bench_app:registry`` processes, started the
way users start them (default flags, so INFO logging with a line per task start and
end, unless ``worker_log_level`` says otherwise) and stopped with SIGTERM.

Modes (all by default, in this order):

``enqueue``
    one producer: ``Queuer.enqueue`` one task per transaction, then
    ``Queuer.enqueue_many`` in batches of 500; tasks/s for each. With ``--async``:
    ``AsyncQueuer`` and ``Queuer`` in turn, three rounds of each (single, then
    batched), on pools of the same size; medians and the async/sync ratios.
``burndown``
    N no-op tasks pre-enqueued with ``enqueue_many`` (batches of 500), then W worker
    processes x C concurrency. The clock runs from the database's clock just before
    the workers are spawned to the last ``finished_at`` (database clock too).
``finished``
    a burn-down on the empty table, then M finished tasks written by one
    ``INSERT ... SELECT generate_series`` (then ``VACUUM ANALYZE``, as autovacuum would
    have long done for old history), then the same burn-down again; the ratio of the
    two rates.
``stale``
    as ``finished``, but the statistics the planner has for the burst's burn-down
    are the ones taken before the burst (M finished rows, no waiting one): what a
    claim meets between two autovacuum runs after a large enqueue.
``latency``
    idle workers; one producer enqueues one task per transaction at R tasks/s for T
    seconds (open loop). Latency per task two ways: on the database clock,
    ``started_at - created_at`` (claim statement start minus enqueue statement start),
    and on the handler's side, the wall clock when the handler started minus the wall
    clock just before the ``enqueue`` call (the shared harness's definition: it
    includes the enqueue round trip and the dispatch to a handler thread).
``vacuum``
    three burn-downs: without a long transaction; while a REPEATABLE READ transaction
    that has taken its snapshot stays open (vacuum cannot remove any row version
    made dead after it); and after that transaction ends (no manual VACUUM: what
    autovacuum and index tuple killing recover on their own).

Table size, index size, live and dead tuples (``pg_relation_size``,
``pg_indexes_size``, and ``pg_stat_user_tables`` right after an ANALYZE) are recorded
before and after every burn-down. Between modes the table is emptied with TRUNCATE. A burn-down also reports
the steady rate (the middle 80 % of completions, by ``finished_at``) and the workers'
CPU per task from the first completion on (from /proc, so start-up is left out).
"""

from taskq.tools.bench.config import MODES, BenchConfig, BenchError, Progress, parse_modes
from taskq.tools.bench.modes import Bench, run, sigterm_as_interrupt

__all__ = [
    "MODES",
    "Bench",
    "BenchConfig",
    "BenchError",
    "Progress",
    "parse_modes",
    "run",
    "sigterm_as_interrupt",
]
