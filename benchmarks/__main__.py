"""Run the side-by-side benchmark.

    .venv/bin/python -m benchmarks                       # every peer, 3 rounds, N=20,000
    .venv/bin/python -m benchmarks --peers conveyor arq --rounds 1 --n 2000
    .venv/bin/python -m benchmarks --smoke               # conveyor only, tiny N, writes nothing
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import redis
from rich.console import Console
from rich.table import Table

from .harness import (
    HERE,
    Peer,
    Step,
    discover,
    machine,
    median_spread,
    now_utc,
    plan,
    prepare,
    run_one,
    start_server,
)

SMOKE_SCENARIOS = ("enqueue", "enqueue_bulk", "drain", "io", "latency", "delayed", "memory",
                   "producers")


def main() -> None:
    parser = argparse.ArgumentParser(description="conveyor against its peers, side by side")
    parser.add_argument("--peers", nargs="*", help="peer names (default: all adapters found)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n", type=int, default=20_000, help="jobs in the drain scenarios")
    parser.add_argument("--scenarios", nargs="*", help="only these scenarios")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per run")
    parser.add_argument("--smoke", action="store_true",
                        help="conveyor only, N=200, 1 round, no idle, write nothing")
    parser.add_argument("--no-write", action="store_true", help="don't touch RESULTS.md")
    args = parser.parse_args()
    console = Console()
    if args.smoke:
        args.peers, args.n, args.rounds, args.no_write = ["conveyor"], 200, 1, True
        args.scenarios = args.scenarios or list(SMOKE_SCENARIOS)

    found = discover()
    names = args.peers or sorted(found, key=lambda n: (n != "conveyor", n))
    unknown = [n for n in names if n not in found]
    if unknown:
        parser.error(f"unknown peer(s) {unknown}; adapters found: {sorted(found)}")
    peers = [prepare(name, found[name], console.print) for name in names]
    steps = [s for s in plan(args.n) if not args.scenarios or s.scenario in args.scenarios]
    runs = list(dict.fromkeys(_run_key(s) for s in steps))

    server = start_server()
    with redis.Redis.from_url(server.url) as client:
        args.redis_version = client.info("server")["redis_version"]
    console.print(f"[bold]conveyor benchmark[/] {now_utc()} — {machine()}")
    console.print(f"redis-server {server.binary} on {server.url}; peers: {', '.join(names)}")
    try:
        for round_no in range(1, args.rounds + 1):
            for key in runs:
                step = next(s for s in steps if _run_key(s) == key)
                order = peers if round_no % 2 else list(reversed(peers))
                for peer in order:
                    console.print(f"round {round_no}/{args.rounds} {step.scenario} "
                                  f"n={step.n} p={step.processes} c={step.concurrency}: "
                                  f"{peer.name} ...", end=" ")
                    result = run_one(peer, step, server.url, args.timeout)
                    peer.results.setdefault(key, []).append(result)
                    console.print(result.get("error") or _short(result))
    finally:
        server.close()

    table = _table(peers, steps)
    console.print(table)
    if not args.no_write:
        png = _plot(peers, steps, HERE / "throughput.png")
        _write_results(peers, steps, args, png, HERE / "RESULTS.md")
        console.print(f"wrote {HERE / 'RESULTS.md'} and {png.name}")


def _run_key(step: Step) -> tuple[str, int, int, int]:
    return (step.scenario, step.n, step.processes, step.concurrency)


def _short(result: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in result.items() if k not in ("scenario", "unit"))


def _values(peer: Peer, step: Step) -> list[float]:
    out = []
    for result in peer.results.get(_run_key(step), []):
        value = result.get(step.metric)
        if isinstance(value, (int, float)) and not math.isnan(value):
            out.append(float(value))
    return out


def _cells(peers: list[Peer], step: Step) -> list[str]:
    medians = {p.name: median_spread(v)[0] for p in peers if (v := _values(p, step))}
    best = (max if step.higher_is_better else min)(medians.values()) if medians else None
    cells = []
    for peer in peers:
        values = _values(peer, step)
        if not values:
            errors = [r.get("error") or r.get("note") for r in peer.results.get(_run_key(step), [])]
            cells.append(next((str(e) for e in errors if e), "n/a")[:40])
            continue
        med, lo, hi = median_spread(values)
        text = f"{med:,.1f}" if med < 100 else f"{med:,.0f}"
        if len(values) > 1:
            text += f" ({lo:,.4g} to {hi:,.4g})"
        cells.append(f"**{text}**" if med == best and len(medians) > 1 else text)
    return cells


def _table(peers: list[Peer], steps: list[Step]) -> Table:
    table = Table(title="median (min to max) over rounds; best in bold")
    table.add_column("scenario")
    for peer in peers:
        table.add_column(peer.name, justify="right")
    for step in steps:
        cells = [c.replace("**", "") for c in _cells(peers, step)]
        table.add_row(step.label, *cells)
    return table


def _plot(peers: list[Peer], steps: list[Step], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [s for s in steps if s.higher_is_better and "jobs/s" in s.label]
    fig, axes = plt.subplots(len(shown), 1, figsize=(10, 2.2 * max(len(shown), 1)),
                             squeeze=False)
    for ax, step in zip(axes[:, 0], shown, strict=True):
        names = [p.name for p in peers]
        values = [median_spread(got)[0] if (got := _values(p, step)) else 0 for p in peers]
        ax.barh(names, values, color=["#2a7" if n == "conveyor" else "#889" for n in names])
        ax.set_title(step.label, fontsize=10, loc="left")
        ax.invert_yaxis()
        for y, v in enumerate(values):
            ax.text(v, y, f" {v:,.0f}", va="center", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _write_results(peers: list[Peer], steps: list[Step], args: argparse.Namespace,
                   png: Path, path: Path) -> None:
    lines = [
        f"## {now_utc()} — `python -m benchmarks --rounds {args.rounds} --n {args.n}`",
        "",
        f"Machine: {machine()}. One private redis-server {args.redis_version} for all peers "
        "(AOF off), flushed before every run; peers in turn, order reversed every other "
        "round (A B, B A).",
        "",
        "| scenario | " + " | ".join(p.name for p in peers) + " |",
        "| --- | " + " | ".join("---:" for _ in peers) + " |",
    ]
    for step in steps:
        lines.append(f"| {step.label} | " + " | ".join(_cells(peers, step)) + " |")
    lines += ["", f"![throughput per peer]({png.name})", "", "Peers and their settings:", ""]
    lines += [f"- **{p.name}** ({p.version}): {p.settings}" for p in peers]
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    head, _, rest = old.partition("\n")
    path.write_text(head + "\n\n" + "\n".join(lines) + "\n" + rest)


if __name__ == "__main__":
    main()
