"""The `herald` command: the local stack, the demo, dbt with the stack's environment, schema export."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

from herald.dead_letters import REPLAYABLE_REASONS
from herald.local.processes import StackError


def _local_up(args: argparse.Namespace) -> None:
    from herald.local import stack

    stack.up(stack.StackOptions(state_dir=args.state_dir, seed_users=args.seed,
                                with_pipeline=not args.no_pipeline,
                                sandbox_latency_ms=args.sandbox_latency_ms,
                                pipeline_workers=args.pipeline_workers))
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


OPS_SETTINGS = {
    "project": ("HERALD_PROJECT", "GCP project of Herald's topics, Firestore and BigQuery"),
    "dataset": ("HERALD_DATASET", "BigQuery dataset"),
    "requests_topic": ("HERALD_REQUESTS_TOPIC", "the requests topic"),
    "audit_subscription": ("HERALD_AUDIT_SUBSCRIPTION", "the requests topic's audit subscription"),
    "dead_letter_topic": ("HERALD_DEAD_LETTER_TOPIC", "the dead-letter topic (its -hold "
                                                      "subscription keeps the parked items)"),
    "state_database": ("HERALD_STATE_DATABASE", "Firestore database of Herald's state (outbox)"),
}
"""The ops commands' settings flags: Settings field -> (the environment variable herald/settings.py
reads for it, help)."""


def _add_ops_flags(command: argparse.ArgumentParser, *fields: str) -> None:
    for name in fields:
        variable, help_text = OPS_SETTINGS[name]
        command.add_argument(f"--{name.replace('_', '-')}", dest=name, default=None,
                             help=f"{help_text} (default: ${variable}, else the local stack's, "
                                  "else Herald's)")


def _ops_environment(args: argparse.Namespace, environ: dict[str, str]) -> dict[str, str]:
    """The environment an ops command runs with: its flags over `environ` over the local stack's
    local.env (when there is one) over Herald's defaults (Settings.from_env).

    local.env is used only while no other project is named: with --project or HERALD_PROJECT
    naming another project than the stack's, none of it applies (its emulator hosts would send
    the command's clients to the local stack instead of that project)."""
    from herald.local import stack

    try:
        local = stack.read_env(args.state_dir)
    except StackError:  # no local stack: flags and environment only
        local = {}
    flags = {OPS_SETTINGS[name][0]: value for name, value in vars(args).items()
             if name in OPS_SETTINGS and value is not None}
    named = flags.get("HERALD_PROJECT") or environ.get("HERALD_PROJECT")
    if named and named != local.get("HERALD_PROJECT"):
        local = {}
    return {**local, **environ, **flags}


CLIENT_VARIABLES = ("PUBSUB_EMULATOR_HOST", "FIRESTORE_EMULATOR_HOST")
"""Read by Google's clients themselves, from this process's environment (see herald/settings.py)."""


def _ops_settings(args: argparse.Namespace):
    """Settings of the project an ops command works on (see _ops_environment); its emulator hosts,
    if any, go into this process's environment for Google's clients."""
    from herald.settings import Settings

    environment = _ops_environment(args, dict(os.environ))
    os.environ.update({name: environment[name] for name in CLIENT_VARIABLES if name in environment})
    return Settings.from_env(environment)


def _outbox_replay(args: argparse.Namespace) -> None:
    from google.cloud import pubsub_v1

    from herald.clients import state_client
    from ingest_function.outbox import Outbox

    settings = _ops_settings(args)
    report = Outbox(state_client(settings)).replay(
        pubsub_v1.PublisherClient(), settings.publish_timeout_s, args.limit)
    print(report.summary())
    if report.error is not None:
        print(f"herald: stopped, Pub/Sub refused: {report.error}", file=sys.stderr)
        sys.exit(1)


def _templates_load(args: argparse.Namespace) -> None:
    from herald.clients import state_client
    from herald.contracts import ContractError
    from herald.templates import TemplateStore, load_directory

    settings = _ops_settings(args)
    try:
        loaded = load_directory(TemplateStore(state_client(settings)), args.directory)
    except ContractError as error:
        sys.exit(f"herald: nothing loaded: {error}")
    for template_type, locale in loaded:
        print(f"loaded {template_type} {locale}")


def _dlq_replay(args: argparse.Namespace) -> None:
    from google.cloud import pubsub_v1

    from herald.dlq import replay

    settings = _ops_settings(args)
    report = replay(settings, pubsub_v1.SubscriberClient(), pubsub_v1.PublisherClient(),
                    frozenset(args.reason or ()), args.limit)
    reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(report.by_reason.items()))
    print(f"replayed {report.replayed} dead letters ({reasons or 'none'}); {report.left} left parked")


def _reconcile(args: argparse.Namespace) -> None:
    from google.cloud import pubsub_v1

    from herald.clients import bigquery_client
    from herald.reconcile import Reconciler

    settings = _ops_settings(args)
    for lane in settings.lanes():  # the routine requests topic, then the urgent one
        print(Reconciler(lane, bigquery_client(settings), pubsub_v1.SubscriberClient(),
                         pubsub_v1.PublisherClient(), args.grace_s).run().summary())


def _report(args: argparse.Namespace) -> None:
    from herald.local import stack
    from herald.report import write_report
    from herald.settings import Settings

    settings = Settings.from_env({**os.environ, **stack.read_env(args.state_dir)})
    print(f"wrote {write_report(settings, args.out_dir)}")


def _schema(args: argparse.Namespace) -> None:
    from herald.dbt_project import render_sources_yaml, write_sources_yaml
    from herald.flex_templates import write_metadata
    from herald.infrastructure import write_files
    from ingest_function import openapi

    if args.write:
        for path in (write_sources_yaml(), *write_files(), openapi.write(), *write_metadata()):
            print(f"wrote {path}")
    else:
        print(render_sources_yaml())


def _package_function(args: argparse.Namespace) -> None:
    from herald.shipping import build_function

    print(f"wrote {build_function(args.out)}")


def _bench(args: argparse.Namespace) -> None:
    from herald.bench.runner import main as run_bench

    sys.exit(run_bench(args))


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
    up.add_argument("--pipeline-workers", type=int, default=1,
                    help="processes of the routine delivery pipeline sharing its subscription "
                         "(as Dataflow scales out; default 1)")
    up.set_defaults(handler=_local_up)
    local.add_parser("down", help="stop exactly what `up` started").set_defaults(handler=_local_down)

    demo = commands.add_parser("demo", help="up, send a mixed workload, drain, dbt, print marts, down")
    demo.add_argument("--count", type=int, default=2000)
    demo.add_argument("--users", type=int, default=500)
    demo.set_defaults(handler=_demo)

    dbt = commands.add_parser("dbt", help="run dbt against the running local stack")
    dbt.add_argument("dbt_args", nargs=argparse.REMAINDER)
    dbt.set_defaults(handler=_dbt)

    from ingest_function.outbox import DEFAULT_REPLAY_LIMIT

    outbox = commands.add_parser("outbox", help="the ingest outbox"
                                 ).add_subparsers(dest="action", required=True)
    replay = outbox.add_parser("replay", help="republish pending outbox entries, oldest first")
    replay.add_argument("--limit", type=int, default=DEFAULT_REPLAY_LIMIT,
                        help=f"publish at most N entries (default {DEFAULT_REPLAY_LIMIT})")
    _add_ops_flags(replay, "project", "state_database")
    replay.set_defaults(handler=_outbox_replay)

    dlq = commands.add_parser("dlq", help="the dead letters"
                              ).add_subparsers(dest="action", required=True)
    dlq_replay = dlq.add_parser("replay", help="send parked items back through (a delivery: "
                                "that delivery only), once their cause is fixed")
    dlq_replay.add_argument("--reason", action="append",
                            choices=[reason.value for reason in REPLAYABLE_REASONS],
                            metavar="REASON", help="only items parked for this reason ("
                            f"{', '.join(REPLAYABLE_REASONS)}); repeatable")
    dlq_replay.add_argument("--limit", type=int, default=None, help="replay at most N items")
    _add_ops_flags(dlq_replay, "project", "dead_letter_topic")
    dlq_replay.set_defaults(handler=_dlq_replay)

    templates = commands.add_parser("templates", help="notification templates (Firestore)"
                                    ).add_subparsers(dest="action", required=True)
    load = templates.add_parser("load", help="store <dir>/<templateType>/<locale>.json (and "
                                "<locale>.html, the email HTML) in the running local stack")
    load.add_argument("directory", type=Path)
    _add_ops_flags(load, "project", "state_database")
    load.set_defaults(handler=_templates_load)

    from herald.reconcile import DEFAULT_GRACE_S

    reconcile = commands.add_parser("reconcile", help="check every accepted request finished; "
                                    "republish the deliveries of any that did not")
    reconcile.add_argument("--grace-s", type=float, default=DEFAULT_GRACE_S,
                           help="only requests published at least this long ago "
                           f"(default {DEFAULT_GRACE_S:.0f})")
    _add_ops_flags(reconcile, "project", "dataset", "requests_topic", "audit_subscription",
                   "dead_letter_topic")
    reconcile.set_defaults(handler=_reconcile)

    report = commands.add_parser("report", help="write an HTML report (figures, tables) of the "
                                 "marts on the running local stack to reports/")
    report.add_argument("--out-dir", type=Path, default=Path("reports"))
    report.set_defaults(handler=_report)

    schema = commands.add_parser("schema", help="print dbt sources from herald.events; --write every "
                                 "generated file: them, terraform/generated/ (names, table schemas), "
                                 "ingest_function/openapi.json and the Flex Templates' metadata.json")
    schema.add_argument("--write", action="store_true")
    schema.set_defaults(handler=_schema)

    from herald.shipping import DEFAULT_FUNCTION_OUT

    package = commands.add_parser("package", help="assemble what ships to production"
                                  ).add_subparsers(dest="action", required=True)
    function = package.add_parser("function", help="the Cloud Function's source directory: "
                                  "main.py, requirements.txt and the runtime modules main.py imports")
    function.add_argument("--out", type=Path, default=DEFAULT_FUNCTION_OUT,
                          help="directory to (re)write (default build/function, which terraform zips)")
    function.set_defaults(handler=_package_function)

    from herald.bench.runner import add_arguments as bench_arguments

    bench = commands.add_parser("bench", help="throughput, latency, batching and memory on a "
                                "private local stack; writes bench/results.json and RESULTS.md")
    bench_arguments(bench)
    bench.set_defaults(handler=_bench)
    return root


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        args.handler(args)
    except StackError as error:
        print(f"herald: {error}", file=sys.stderr)
        sys.exit(1)
