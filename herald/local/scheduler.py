"""The local stack's scheduled jobs, run as Cloud Scheduler runs them in production.

    python -m herald.local.scheduler      # started by `herald local up`, stopped by `down`

Production schedules the `replay_outbox` function (every minute) and `herald reconcile`; on the
local stack this process runs both, so nothing that needs them waits for someone to type a
command. Each job runs on its own thread, the next run `every_s` after the previous one ended
(so runs of one job never overlap), and each run's outcome is one line of this process's log
(`<state>/logs/scheduler.log`):

    outbox-replay  every HERALD_OUTBOX_REPLAY_EVERY_S (default 2 s): republish pending outbox
                   entries (`ingest_function/outbox.py`). Short, so an entry written while Pub/Sub
                   was down is published within seconds of Pub/Sub answering again.
    reconcile      every HERALD_RECONCILE_EVERY_S (default 60 s), with grace
                   HERALD_RECONCILE_GRACE_S (default `herald.reconcile.DEFAULT_GRACE_S`).
    fcm-export-status  every HERALD_FCM_EXPORT_SYNC_EVERY_S (default 5 s; a minute suits
                   production): the Android pushes FCM's BigQuery export reports delivered, into
                   the status API's store (`herald.status.FcmExportSync`, last day re-read).

An interval of 0 turns a job off: tests that run the reconciler themselves, with no grace, turn
the scheduled one off (its holds on audited messages would hide them from the test's run).
Settings (project, emulator hosts, publish timeout) come from the environment, as for every
Herald process.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable, Mapping

from google.cloud import pubsub_v1

from herald.clients import bigquery_client, state_client
from herald.reconcile import DEFAULT_GRACE_S, Reconciler
from herald.settings import Settings
from herald.status import FcmExportSync, StatusStore
from ingest_function.outbox import Outbox

FCM_EXPORT_LOOKBACK = timedelta(days=1)
"""How far back each fcm-export-status run re-reads: FCM batches its export for up to a day."""
RUNNING_MARKER = "herald scheduler running"
"""Logged once the jobs are scheduled: `herald local up` waits for it."""
log = logging.getLogger("herald.scheduler")


@dataclass(frozen=True)
class Schedule:
    """How often each job runs, in seconds (0: not at all), and the reconciler's grace."""

    outbox_replay_every_s: float = 2.0
    reconcile_every_s: float = 60.0
    reconcile_grace_s: float = DEFAULT_GRACE_S
    fcm_export_sync_every_s: float = 5.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Schedule:
        env = os.environ if env is None else env
        default = cls()
        return cls(
            outbox_replay_every_s=float(env.get("HERALD_OUTBOX_REPLAY_EVERY_S",
                                                default.outbox_replay_every_s)),
            reconcile_every_s=float(env.get("HERALD_RECONCILE_EVERY_S", default.reconcile_every_s)),
            reconcile_grace_s=float(env.get("HERALD_RECONCILE_GRACE_S", default.reconcile_grace_s)),
            fcm_export_sync_every_s=float(env.get("HERALD_FCM_EXPORT_SYNC_EVERY_S",
                                                  default.fcm_export_sync_every_s)))


class RunFailed(Exception):
    """A run that ended early for a reason the job reports (e.g. Pub/Sub still refusing)."""


@dataclass(frozen=True)
class Job:
    """A named job: `run` performs one run and returns its outcome, or raises."""

    name: str
    every_s: float
    run: Callable[[], str]


def outbox_replay(settings: Settings, every_s: float) -> Job:
    outbox, publisher = Outbox(state_client(settings)), pubsub_v1.PublisherClient()

    def run() -> str:
        report = outbox.replay(publisher, settings.publish_timeout_s)
        if report.error is not None:
            raise RunFailed(f"{report.summary()}, then Pub/Sub refused: {report.error}")
        return report.summary()
    return Job("outbox-replay", every_s, run)


def reconcile(settings: Settings, every_s: float, grace_s: float) -> Job:
    """Each lane's audit subscription (routine and urgent), one line per run."""
    bq, subscriber, publisher = (bigquery_client(settings), pubsub_v1.SubscriberClient(),
                                 pubsub_v1.PublisherClient())
    reconcilers = [Reconciler(lane, bq, subscriber, publisher, grace_s) for lane in settings.lanes()]
    return Job("reconcile", every_s, lambda: "; ".join(
        reconciler.run().summary() for reconciler in reconcilers))


def fcm_export_status(settings: Settings, every_s: float) -> Job:
    store = StatusStore(state_client(settings), timedelta(seconds=settings.status_ttl_s))
    sync = FcmExportSync(bigquery_client(settings), store, settings.events_table,
                         settings.fcm_export_table_id, FCM_EXPORT_LOOKBACK)
    return Job("fcm-export-status", every_s, sync.run)


def run_every(job: Job, stop: threading.Event) -> None:
    """Run `job` now and then `job.every_s` after each run ends, until `stop` is set; a run that
    fails is logged with its reason and the schedule goes on, as Cloud Scheduler's does."""
    while True:
        try:
            log.info("%s: %s", job.name, job.run())
        except RunFailed as failure:
            log.warning("%s failed: %s", job.name, failure)
        except Exception:  # noqa: BLE001 - a failed run must not end the schedule
            log.exception("%s failed", job.name)
        if stop.wait(job.every_s):
            return


def jobs(settings: Settings, schedule: Schedule) -> list[Job]:
    """The jobs `schedule` turns on."""
    made = []
    if schedule.outbox_replay_every_s > 0:
        made.append(outbox_replay(settings, schedule.outbox_replay_every_s))
    if schedule.reconcile_every_s > 0:
        made.append(reconcile(settings, schedule.reconcile_every_s, schedule.reconcile_grace_s))
    if schedule.fcm_export_sync_every_s > 0:
        made.append(fcm_export_status(settings, schedule.fcm_export_sync_every_s))
    return made


def main() -> None:
    """Run the jobs until the process is stopped (SIGTERM from `herald local down`)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    schedule = Schedule.from_env()
    scheduled = jobs(Settings.from_env(), schedule)
    stop = threading.Event()
    threads = [threading.Thread(target=run_every, args=(job, stop), name=job.name, daemon=True)
               for job in scheduled]
    for thread in threads:
        thread.start()
    log.info("%s: %s (%s)", RUNNING_MARKER, ", ".join(
        f"{job.name} every {job.every_s:g} s" for job in scheduled) or "no jobs", schedule)
    stop.wait()


if __name__ == "__main__":
    main()
