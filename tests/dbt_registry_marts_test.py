"""The marts of issue 13 on their own events: switch changes over time, and deliveries per template
and locale (rows built with herald.events and herald.users, as the pipelines write them)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING

from herald.contracts import Channel
from herald.events import Reason, Status, delivery_event
from herald.users import Change, RegistryChanges

if TYPE_CHECKING:  # the fixtures' types; conftest.py is not imported by tests
    from conftest import Story, Warehouse

DATASET = "herald_registry_marts"
DAY_1 = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def rows(story: Story) -> list[dict]:
    changes = [
        RegistryChanges("t1", "crm", iso(DAY_1), (
            Change(Status.PREFERENCE_CHANGED, "u1", "categories.marketing", False),
            Change(Status.PREFERENCE_CHANGED, "u1", "channels.sms", False))),
        RegistryChanges("t2", "crm", iso(DAY_1 + timedelta(hours=1)), (
            Change(Status.PREFERENCE_CHANGED, "u2", "categories.marketing", False),
            Change(Status.REGISTRY_CHANGED, "u2", "contacts.email", True))),
        RegistryChanges("t3", "app", iso(DAY_1 + timedelta(days=1)), (
            Change(Status.PREFERENCE_CHANGED, "u1", "categories.marketing", None),)),
    ]
    out = [row for record in changes for row in record.to_events()]
    envelope = story.request(Channel.EMAIL, DAY_1)
    for user, locale, status in (("ko", "ko", Status.SENT), ("ko2", "ko", Status.SENT),
                                 ("de", "de", Status.SENT), ("fr", "en", Status.SENT)):
        out.append(delivery_event(envelope, f"span-{user}", status, user_id=user, locale=locale,
                                  provider="sendgrid"))
    out.append(delivery_event(envelope, "span-x", Status.FAILED, user_id="x", provider="sendgrid",
                              reason=Reason.TEMPLATE_ERROR.value))
    return [*story.rows, *out, dict(out[-2])]  # a repeated event counts once


def test_preference_changes_and_template_deliveries(warehouse: Warehouse,
                                                    new_story: Story) -> None:
    warehouse.load(DATASET, rows(new_story))
    run = warehouse.dbt(DATASET, "build", "--select", "+int_deliveries", "+preference_changes_daily",
                        "+template_deliveries_daily")
    assert run.success and not run.problems(), run.problems()
    day_1 = DAY_1.date()
    changes = {(r["changed_date"], r["sender_client"], r["setting"], r["value"]): (
                   r["changes"], r["users"])
               for r in warehouse.query(DATASET, f"SELECT * FROM {DATASET}.preference_changes_daily")}
    assert changes == {
        (day_1, "crm", "categories.marketing", "false"): (2, 2),
        (day_1, "crm", "channels.sms", "false"): (1, 1),
        (day_1 + timedelta(days=1), "app", "categories.marketing", None): (1, 1)}
    deliveries = {(r["template_type"], r["locale"], r["status"]): r["deliveries"]
                  for r in warehouse.query(DATASET,
                                           f"SELECT * FROM {DATASET}.template_deliveries_daily")}
    assert deliveries == {("out_for_delivery", "ko", "sent"): 2,
                          ("out_for_delivery", "de", "sent"): 1,
                          ("out_for_delivery", "en", "sent"): 1,
                          ("out_for_delivery", None, "failed"): 1}
    assert all(isinstance(day, date) for day, *_ in changes)
