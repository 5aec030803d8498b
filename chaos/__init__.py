"""A chaos suite for conveyor: real ``conveyor worker`` processes, a private
Redis (AOF on) and PostgreSQL, producers, and faults while jobs flow (workers
SIGKILLed, SIGTERMed and paused past their locks, Redis killed and restarted,
connections cut, delayed and replies lost through a proxy, toxic jobs); then
a checker that every accepted job ended, its effect is there, and every
duplicate run is explained by a fault.

    python -m chaos --duration 75 --rate 40  # about the run `make test` makes
    python -m chaos --jobs 200000 --rate 250 --workers 4 --concurrency 16  # the long run
    python -m chaos --redis cluster   # or sentinel: the same through failovers

Modules: :mod:`chaos.driver` (the run), :mod:`chaos.tasks` (the jobs),
:mod:`chaos.faults`, :mod:`chaos.workers`, :mod:`chaos.proxy`,
:mod:`chaos.checker`, :mod:`chaos.topology` (the Redis a run starts, and its
failovers) with :mod:`chaos.redis_cluster` and :mod:`chaos.sentinel_setup`
(which the tests use too), and :mod:`chaos.reply_dropper` (the tests' proxy
that loses one command's reply).
"""
