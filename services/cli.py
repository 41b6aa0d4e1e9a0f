"""The ``fogmap`` command line.

    fogmap up [--dataset digits]          the embedded default: API :8000, dashboard :5006
    fogmap ingest --dataset PATH          add a data set to a running (or stopped) instance
    fogmap simulate --dataset D --strategy S --seed N --initial N --batch N --budget N
                    --out FILE.json       an active-learning run with simulated annotators
    fogmap events tail [--topic T] [-f]   print bus events as CloudEvents JSON lines
    fogmap schemas export [--out DIR]     regenerate schemas/events/*.json from the models
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from pathlib import Path

import structlog

from fogmap.core.settings import Settings


def _logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.processors.TimeStamper("iso"),
                    structlog.processors.format_exc_info, structlog.processors.JSONRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )


def _settings(args: argparse.Namespace, **extra: object) -> Settings:
    overrides = {k: v for k, v in extra.items() if v is not None}
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = Path(args.data_dir)
    return Settings(**overrides)  # type: ignore[arg-type]


def cmd_up(args: argparse.Namespace) -> int:
    from fogmap.runtime.server import serve

    settings = _settings(args, dataset=args.dataset, api_port=args.api_port,
                         dashboard_port=args.dashboard_port, host=args.host)
    _logging(settings.log_level)
    asyncio.run(serve(settings, settings.dataset))
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from fogmap.catalog.datasets import DatasetError
    from fogmap.runtime.bootstrap import bootstrap

    settings = _settings(args)
    _logging(settings.log_level)

    async def run() -> int:
        runtime = bootstrap(settings)
        try:
            ds = await runtime.ingest(args.dataset)
        finally:
            await runtime.stop()
        print(f"ingested {len(ds.images)} images of {ds.name!r} ({len(ds.classes)} classes)")
        return 0

    try:
        return asyncio.run(run())
    except DatasetError as exc:
        print(f"fogmap ingest: {exc}", file=sys.stderr)
        return 2


def cmd_simulate(args: argparse.Namespace) -> int:
    from fogmap.runtime.simulate import simulate
    from fogmap.selection.strategies import STRATEGIES

    if args.strategy not in STRATEGIES:
        print(f"fogmap simulate: unknown strategy {args.strategy!r}; known: "
              f"{', '.join(sorted(STRATEGIES))}", file=sys.stderr)
        return 2
    if args.budget < args.initial or args.initial < 2 or args.batch < 1:
        print("fogmap simulate: need budget >= initial >= 2 and batch >= 1", file=sys.stderr)
        return 2
    settings = _settings(args, log_level=args.log_level)
    _logging(settings.log_level)
    result = asyncio.run(simulate(settings, args.dataset, args.strategy, args.seed,
                                  args.initial, args.batch, args.budget))
    text = json.dumps(result, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0


def cmd_events_tail(args: argparse.Namespace) -> int:
    from fogmap.bus.sqlite import SqliteBus
    from fogmap.core.events import TOPICS

    settings = _settings(args)
    path = Path(settings.data_dir) / "bus.db"
    if not path.exists():
        print(f"fogmap events tail: no bus at {path} (start `fogmap up` first)", file=sys.stderr)
        return 2
    topics = [args.topic] if args.topic else sorted(TOPICS)
    unknown = [t for t in topics if t not in TOPICS and not t.endswith(".dlq")]
    if unknown:
        print(f"fogmap events tail: unknown topic {unknown[0]!r}; topics: "
              f"{', '.join(sorted(TOPICS))}", file=sys.stderr)
        return 2
    bus = SqliteBus(path)
    after = {t: 0 if args.from_beginning else bus.head(t) for t in topics}
    try:
        while True:
            for topic in topics:
                for off, body in bus.read(topic, after[topic], 1000):
                    after[topic] = off
                    print(body, flush=True)
            if not args.follow:
                return 0
            time.sleep(0.2)
    except KeyboardInterrupt:
        return 0
    finally:
        bus.close()


def cmd_schemas_export(args: argparse.Namespace) -> int:
    from fogmap.core.contract import export

    for path in export(Path(args.out)):
        print(path)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fogmap", description="visualization-guided active "
                                "learning on images")
    sub = p.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start the embedded default (API, dashboard, services)")
    up.add_argument("--dataset", default=None, help="digits | FILE.npz | FOLDER (default: "
                    "digits)")
    up.add_argument("--data-dir")
    up.add_argument("--host")
    up.add_argument("--api-port", type=int)
    up.add_argument("--dashboard-port", type=int)
    up.set_defaults(func=cmd_up)

    ing = sub.add_parser("ingest", help="add a data set")
    ing.add_argument("--dataset", required=True)
    ing.add_argument("--data-dir")
    ing.set_defaults(func=cmd_ingest)

    sim = sub.add_parser("simulate", help="an active-learning run with simulated annotators")
    sim.add_argument("--dataset", default="digits")
    sim.add_argument("--strategy", default="auto")
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--initial", type=int, default=20)
    sim.add_argument("--batch", type=int, default=20)
    sim.add_argument("--budget", type=int, default=300)
    sim.add_argument("--out")
    sim.add_argument("--log-level", default="WARNING")
    sim.set_defaults(func=cmd_simulate)

    ev = sub.add_parser("events", help="read the event log")
    ev_sub = ev.add_subparsers(dest="events_command", required=True)
    tail = ev_sub.add_parser("tail", help="print events as JSON lines")
    tail.add_argument("--topic")
    tail.add_argument("-f", "--follow", action="store_true")
    tail.add_argument("--from-beginning", action="store_true")
    tail.add_argument("--data-dir")
    tail.set_defaults(func=cmd_events_tail)

    sc = sub.add_parser("schemas", help="event contracts")
    sc_sub = sc.add_subparsers(dest="schemas_command", required=True)
    exp = sc_sub.add_parser("export", help="write schemas/events/*.json")
    exp.add_argument("--out", default="schemas/events")
    exp.set_defaults(func=cmd_schemas_export)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
