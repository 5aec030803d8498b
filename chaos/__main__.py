"""``python -m chaos``: one chaos run; prints its summary, exits 1 on any violation."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path

from .driver import Options, run
from .topology import KINDS


def parse(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--duration", type=float, default=None,
                      help="seconds of adding jobs (default 90 unless --jobs)")
    size.add_argument("--jobs", type=int, default=None, help="jobs to add, then stop adding")
    parser.add_argument("--rate", type=float, default=50.0, help="jobs added per second")
    parser.add_argument("--workers", type=int, default=3, help="conveyor worker processes")
    parser.add_argument("--concurrency", type=int, default=8, help="jobs at once per worker")
    parser.add_argument("--seed", type=int, default=1, help="seed of the fault schedule and mix")
    redis = parser.add_mutually_exclusive_group()
    redis.add_argument("--redis", choices=KINDS, default="single",
                       help="the private Redis to start: one server (restarted as a fault), a "
                       "cluster of 3 masters each with a replica, or a master, a replica and 3 "
                       "sentinels (both failed over as a fault, adds durable)")
    redis.add_argument("--redis-url", default=None,
                       help="use this Redis (redis://, redis+cluster://, redis+sentinel://) "
                       "instead of a private one; Redis restarts and failovers are then skipped")
    parser.add_argument("--database-url", default=None,
                        help="use this PostgreSQL instead of a private one")
    parser.add_argument("--lock-ms", type=int, default=3000, help="the workers' lock duration")
    parser.add_argument("--fault-interval", type=float, default=3.0,
                        help="mean seconds between faults (0: no faults)")
    parser.add_argument("--failover-every", type=float, default=10.0,
                        help="least seconds from the end of a failover to the next one")
    parser.add_argument("--drain-timeout", type=float, default=180.0,
                        help="seconds to wait for every job to finish after the last add")
    parser.add_argument("--queue", default="chaos")
    parser.add_argument("--logs", type=Path, default=None, help="directory for worker logs")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON report here")
    parser.add_argument("--record", type=Path, default=None,
                        help="write everything recorded here (python -m chaos.checker reads it)")
    args = parser.parse_args(argv)
    options = Options(
        duration=args.duration if args.duration is not None or args.jobs is not None else 90.0,
        jobs=args.jobs, rate=args.rate, workers=args.workers, concurrency=args.concurrency,
        seed=args.seed, redis=args.redis, redis_url=args.redis_url, database_url=args.database_url,
        lock_ms=args.lock_ms, fault_interval=args.fault_interval,
        failover_every=args.failover_every,
        drain_timeout=args.drain_timeout, queue=args.queue, logs=args.logs, out=args.out,
        record=args.record,
    )
    return options


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    options = parse(argv)
    verdict, report = asyncio.run(run(options))
    print(json.dumps(verdict.summary, indent=2))
    if options.out is not None:
        options.out.write_text(json.dumps(report, indent=2))
    if verdict.violations:
        print("CHAOS RUN FAILED:", file=sys.stderr)
        for line in verdict.violations:
            print("  " + line, file=sys.stderr)
        return 1
    print("chaos run passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
