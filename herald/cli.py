"""The `herald` command: the local stack, the demo, dbt with the stack's environment, schema export."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

from herald.local.processes import StackError


def _local_up(args: argparse.Namespace) -> None:
    from herald.local import stack

    stack.up(stack.StackOptions(state_dir=args.state_dir, seed_users=args.seed,
                                with_pipeline=not args.no_pipeline,
                                sandbox_latency_ms=args.sandbox_latency_ms))
    print(f"# written to {args.state_dir / 'local.env'}; stop with `herald local down`")


def _local_down(args: argparse.Namespace) -> None:
    from herald.local import stack

    stack.down(args.state_dir)


def _demo(args: argparse.Namespace) -> None:
    from herald.demo import run_demo

    run_demo(args.state_dir, args.count, args.users)


def _dbt(args: argparse.Namespace) -> None:
    from herald.dbt_project import run_dbt
    from herald.local import stack

    result = run_dbt(args.dbt_args, env={**os.environ, **stack.read_env(args.state_dir)})
    print(result.stdout)


def _schema(args: argparse.Namespace) -> None:
    from herald.dbt_project import render_sources_yaml, write_sources_yaml

    if args.write:
        write_sources_yaml()
    else:
        print(render_sources_yaml())


def parser() -> argparse.ArgumentParser:
    from herald.local.stack import default_state_dir

    root = argparse.ArgumentParser(prog="herald", description=__doc__)
    root.add_argument("--state-dir", type=Path, default=default_state_dir(),
                      help="where the local stack keeps local.env, pids and logs (default .herald)")
    commands = root.add_subparsers(dest="command", required=True)

    local = commands.add_parser("local", help="the local stack on Google's emulators").add_subparsers(
        dest="action", required=True)
    up = local.add_parser("up", help="start every service on free ports; print KEY=VALUE endpoints")
    up.add_argument("--seed", type=int, nargs="?", const=500, default=0,
                    help="seed N demo users with devices into Firestore (default 500 when given)")
    up.add_argument("--no-pipeline", action="store_true", help="do not start the Beam pipeline")
    up.add_argument("--sandbox-latency-ms", type=int, default=100)
    up.set_defaults(handler=_local_up)
    local.add_parser("down", help="stop exactly what `up` started").set_defaults(handler=_local_down)

    demo = commands.add_parser("demo", help="up, send a mixed workload, drain, dbt, print marts, down")
    demo.add_argument("--count", type=int, default=2000)
    demo.add_argument("--users", type=int, default=500)
    demo.set_defaults(handler=_demo)

    dbt = commands.add_parser("dbt", help="run dbt against the running local stack")
    dbt.add_argument("dbt_args", nargs=argparse.REMAINDER)
    dbt.set_defaults(handler=_dbt)

    schema = commands.add_parser("schema", help="print (or --write) dbt sources from herald.events")
    schema.add_argument("--write", action="store_true")
    schema.set_defaults(handler=_schema)
    return root


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        args.handler(args)
    except StackError as error:
        print(f"herald: {error}", file=sys.stderr)
        sys.exit(1)
