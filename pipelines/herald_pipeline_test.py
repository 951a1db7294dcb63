"""DeliverNotifications end to end on the streaming DirectRunner, against the real components.

Raw Pub/Sub messages (a TestStream of `PubsubMessage`, as `ReadFromPubSub(with_attributes=True)`
yields them) go through the whole composite: users and devices come from Google's Firestore
emulator (seeded with `herald.local.seed`), sends go through the real SDK senders to an in-process
`SandboxServer`. Every element is counted through every branch, against counts this test derives
itself from the seed documents (it never calls `plan_deliveries`), so a stage that drops, doubles
or mis-routes an element fails it: the per-(status, channel, reason) table, each of the six send
branches (push/sms/email x urgent/routine), one terminal event per delivery span, one `accepted` per
envelope, and the sandbox ledger holding exactly the `sent` spans.

Processing time under TestStream (why the stream advances it by "now + 1 h" once):
the DirectRunner that runs TestStream (BundleBasedDirectRunner) drives processing-time timers from a
TestClock that starts at the epoch and only moves on `advance_processing_time`, while
GroupIntoBatches (`clock() + max_buffering_duration_secs`), AsyncWrapper (`time() + frequency`) and
the dedupe TTL (`Timestamp.now() + ttl`) all set theirs from the wall clock. Until the TestClock
passes the wall clock no batch flushes and no finished send is committed. One advance to
wall-clock + 1 h (well inside the 24 h dedupe TTL, so no claim expires) makes every later
short timer due at once; the runner then re-fires AsyncWrapper's commit timer until its sends are
done, and feeds the next TestStream event only when nothing is running and no timer fired, so each
step is drained before the next one starts. Without that advance the sends never reach the event
output: see `test_without_a_processing_time_advance_no_send_is_committed`.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Iterator

import apache_beam as beam
import pytest
from apache_beam.io.gcp.pubsub import PubsubMessage
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.pipeline import PipelineVisitor
from apache_beam.runners.direct.direct_runner import DirectPipelineResult
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.test_stream import TestStream as BeamTestStream
from apache_beam.testing.util import BeamAssertException, assert_that
from apache_beam.transforms.async_dofn import AsyncWrapper
from google.cloud import firestore

from herald import users
from herald.clients import state_client
from herald.contracts import Channel, Envelope, new_envelope, parse_request
from herald.dead_letters import DeadLetter
from herald.local.seed import SeedUser, demo_users, household, seed
from herald.workload import hostile_messages
from herald.sandbox import server as sandbox_server
from herald.settings import Settings
from herald.templates import TemplateStore, parse_translation
from pipelines import resources
from pipelines.bigquery_sink import WriteBatching
from pipelines.directory import Directory
from herald.contracts import HEARTBEAT_ATTRIBUTE
from pipelines.herald_pipeline import DeliverNotifications
from pipelines.options import HeraldOptions

PROJECT = "herald-pipeline-test"
SEEDED_USERS = 40
TTL_S = 24 * 3600
CLOCK_LEAD_S = 3600
"""How far ahead of the wall clock the TestClock is moved: past every short timer, not the TTL."""

CHANNELS = ("push", "sms", "email")
LANE_OF_PRIORITY = {"high": "urgent", "normal": "routine", "low": "routine"}
LANE_NAMES = ("urgent", "routine")
BRANCHES = tuple(itertools.product(CHANNELS, LANE_NAMES))


# --- the input mix ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Request:
    user: str
    channel: str
    priority: str
    category: str
    notification_id: str


@dataclass
class Message:
    """One TestStream element and what it is, for the expectation."""

    pubsub: PubsubMessage
    kind: str  # "envelope" | "garbage" | "heartbeat"
    request: Request | None = None
    envelope: Envelope | None = None
    redelivery_of: "Message | None" = None


_ids = itertools.count()


def envelope_message(req: Request, step: int = 0) -> Message:
    """Step k's requests are accepted k days on: after the devices an earlier step's sends
    disabled (token hygiene skips a device only for requests accepted after it was disabled)."""
    body = {
        "userId": req.user, "notificationId": req.notification_id, "serviceType": "orders",
        "categoryType": req.category, "notificationType": req.channel,
        "templateType": "order_update", "priority": req.priority,
        "notificationInfo": {"title": "Update", "content": f"{req.notification_id} for {req.user}"},
    }
    envelope = new_envelope(parse_request(body, generate_id=False), "pipeline-test")
    accepted = datetime.fromisoformat(envelope.accepted_at.replace("Z", "+00:00")) + timedelta(days=step)
    envelope = dataclasses.replace(
        envelope, accepted_at=accepted.isoformat(timespec="microseconds").replace("+00:00", "Z"))
    data, attributes = envelope.to_pubsub()
    return Message(PubsubMessage(data, attributes, message_id=f"m-{next(_ids)}"), "envelope",
                   req, envelope)


def duplicate_of(original: Message, step: int, **changes: str) -> Message:
    """A second request (new envelope, new trace) with the same notificationId, in `step`."""
    return envelope_message(dataclasses.replace(original.request, **changes), step)


def redelivery_of(original: Message) -> Message:
    """Pub/Sub handing the very same message (same id, same bytes) out again."""
    return Message(original.pubsub, "envelope", original.request, original.envelope, original)


def garbage(data: bytes) -> Message:
    return Message(PubsubMessage(data, {"channel": "push"}, message_id=f"m-{next(_ids)}"), "garbage")


def heartbeat() -> Message:
    return Message(PubsubMessage(b"{}", {HEARTBEAT_ATTRIBUTE: "1"}, message_id=f"m-{next(_ids)}"),
                   "heartbeat")


def user(index: int) -> str:
    return f"user-{index:05d}"


def build_steps() -> list[list[Message]]:
    """Three TestStream steps, 102 messages (45, 48, 9).

    Step 1: every seeded user once (channel i%3, both priorities per channel), marketing to the
    users who opted out of it and to some who did not, two unknown-user requests, garbage, a heartbeat.
    Step 2: every user again on the next channel with the other priority, redeliveries (one of a
    step-1 message, one push with a disabled device delivered twice within the step), duplicates of
    step-1 requests, garbage, a heartbeat.
    Step 3: duplicates of step-2 requests (one changing lane), a redelivery of a push whose first
    device is an unregistered token, a low-priority email, garbage, a heartbeat.
    """
    step1 = [envelope_message(Request(
        user(i), CHANNELS[i % 3], "high" if i % 2 == 0 else "normal",
        "marketing" if i % 7 == 0 or i % 4 == 2 else "delivery", f"a-{i}"))
        for i in range(SEEDED_USERS)]
    step2 = [envelope_message(Request(
        user(i), CHANNELS[(i + 1) % 3], "high" if i % 2 == 1 else "normal",
        "marketing" if i % 7 == 0 else "account", f"b-{i}"), step=1)
        for i in range(SEEDED_USERS)]
    a, b = step1, step2  # a[i] / b[i]: user i's request of step 1 / 2
    step1 += [
        envelope_message(Request("ghost-1", "push", "high", "delivery", "ghost-push")),
        envelope_message(Request("ghost-2", "sms", "normal", "delivery", "ghost-sms")),
        garbage(b"\xff\xfe\x00 not json at all"),
        garbage(json.dumps({"request": {"userId": "user-00001"}, "traceId": "t"}).encode()),
        heartbeat(),
    ]
    push_5 = b[5]  # user 5: dev-0 disabled, dev-1 and dev-2 sent
    step2 += [
        redelivery_of(a[2]),                 # email, sent in step 1: nothing new but `accepted`
        redelivery_of(push_5),               # same step: the suppressed event repeats, same id
        duplicate_of(a[8], 1),               # email sent in step 1 -> duplicate
        duplicate_of(a[1], 1, priority="high"),  # sms sent (normal) in step 1 -> duplicate (urgent lane)
        duplicate_of(a[15], 1),              # push, only device disabled -> suppressed again
        duplicate_of(a[7], 1),               # sms, marketing, user 7 opted out of it -> suppressed
                                             # again, not a duplicate: nothing was sent
        garbage(b"[1, 2, 3]"),
        heartbeat(),
    ]
    step3 = [
        duplicate_of(b[20], 2),                  # push: dev-0 disabled (again), dev-1/dev-2 duplicate
        duplicate_of(b[26], 2, priority="high"),  # push: dev-0 disabled since step 2 -> suppressed,
                                                  # 2 sent -> 2 duplicates
        duplicate_of(b[12], 2),                  # sms -> duplicate
        duplicate_of(b[34], 2),                  # email -> duplicate (user 34 has no phone, has email)
        redelivery_of(b[26]),                 # failed + 2 sent before: nothing new but `accepted`
        envelope_message(Request(user(4), "email", "low", "security", "c-4"), 2),
        envelope_message(Request(user(39), "push", "high", "security", "c-39"), 2),  # unregistered only
        garbage(b""),
        heartbeat(),
    ]
    return [step1, step2, step3]


# --- the expectation, from the seed documents and this test's own rules -------------------------

@dataclass(frozen=True)
class Outcome:
    """What one delivery of a request must end as."""

    channel: str
    status: str
    reason: str | None
    device_id: str | None = None
    address: str | None = None
    provider_code: str | None = None

    @property
    def reaches_provider(self) -> bool:
        return self.status in ("sent", "failed") and self.reason in (None, "provider_error")

    @property
    def deduped(self) -> bool:
        """Seen by the dedupe's keyed state, which drops its redeliveries: every delivery with an
        address, sent or suppressed."""
        return self.address is not None

    @property
    def claimed(self) -> bool:
        """Decided at the durable claim: a delivery with an address and not opted out (an opted-out
        one is `suppressed` whoever holds the address, unless its own claim says it was sent)."""
        return self.deduped and self.status != "suppressed"


def outcomes(req: Request, users: dict[str, SeedUser], dead_tokens: set[str]) -> list[Outcome]:
    """The rules, as a product owner states them: unknown user fails; a user, category or channel
    switch that is off suppresses everything (in that order of precedence); push goes to every
    device, a disabled device is suppressed, an `unregistered-` token fails at the provider and
    disables its device, so from the next step on it is a disabled device (`dead_tokens`); SMS
    without a phone fails with no_address."""
    seeded = users.get(req.user)
    if seeded is None:
        return [Outcome(req.channel, "failed", "unknown_user")]
    doc = seeded.document
    switch_off = ("user_opted_out" if not doc["notification_enabled"] else
                  "category_opted_out" if doc["categories"].get(req.category) is False else
                  "channel_opted_out" if doc["channels"][req.channel] is False else None)
    if req.channel == "push":
        result = []
        for device_id, device in sorted(seeded.devices.items()):
            token = device["token"]
            if switch_off:
                result.append(Outcome("push", "suppressed", switch_off, device_id, token))
            elif not device["notification_enabled"] or token in dead_tokens:
                result.append(Outcome("push", "suppressed", "device_disabled", device_id, token))
            elif token.startswith("unregistered-"):
                result.append(Outcome("push", "failed", "provider_error", device_id, token,
                                      "UNREGISTERED"))
            else:
                result.append(Outcome("push", "sent", None, device_id, token))
        return result
    address = doc["phone"] if req.channel == "sms" else doc["email"]
    if switch_off:
        return [Outcome(req.channel, "suppressed", switch_off, None, address)]
    if not address:
        return [Outcome(req.channel, "failed", "no_address")]
    return [Outcome(req.channel, "sent", None, None, address)]


@dataclass
class Expectation:
    rows: Counter  # (status, channel, reason) -> raw event rows, repeats of a redelivery included
    branches: Counter  # (channel, lane, status, provider_code) -> send-branch results: provider
    # calls' sent and failed, the duplicates the durable claim found, the opted-out suppressed
    per_trace: dict[str, Counter]  # trace -> Counter of (status, channel, reason, device_id), distinct
    raw_per_trace: dict[str, Counter]  # same, raw rows (a redelivery's repeats included)
    ledger: Counter  # (notification_id, channel, address) the sandbox must have accepted
    envelopes: int  # distinct envelopes (one accepted event id each)
    accepted_rows: int
    dead_letters: int
    never_reached: set[str]  # tokens/phones/emails that must never reach a provider


def expect(steps: list[list[Message]], users: dict[str, SeedUser]) -> Expectation:
    rows, branches, ledger = Counter(), Counter(), Counter()
    per_trace: dict[str, Counter] = defaultdict(Counter)
    raw_per_trace: dict[str, Counter] = defaultdict(Counter)
    claims: dict[tuple[str, str, str], int] = {}  # dedupe key -> step of the first claim
    envelopes = accepted_rows = dead_letters = 0
    dead_tokens: set[str] = set()  # tokens that failed UNREGISTERED in an earlier step
    for step_no, step in enumerate(steps):
        failed_now: set[str] = set()
        for message in step:
            if message.kind == "heartbeat":
                continue  # dropped by the parser: no event at all
            if message.kind == "garbage":
                dead_letters += 1
                rows[("dead_letter", None, "invalid_message")] += 1
                continue
            req, trace = message.request, message.envelope.trace_id
            accepted_rows += 1
            for request_status in ("accepted", "resolved"):
                rows[(request_status, req.channel, None)] += 1
                raw_per_trace[trace][(request_status, req.channel, None, None)] += 1
                if message.redelivery_of is None:
                    per_trace[trace][(request_status, req.channel, None, None)] += 1
            if message.redelivery_of is None:
                envelopes += 1
            for outcome in outcomes(req, users, dead_tokens):
                if outcome.provider_code == "UNREGISTERED":
                    failed_now.add(outcome.address)
                if message.redelivery_of is not None:
                    if not outcome.deduped:  # decided before the dedupe: same event again
                        rows[(outcome.status, outcome.channel, outcome.reason)] += 1
                        raw_per_trace[trace][(outcome.status, outcome.channel, outcome.reason,
                                              outcome.device_id)] += 1
                    continue
                status, reason = outcome.status, outcome.reason
                if outcome.claimed:
                    key = (req.notification_id, outcome.channel, outcome.address)
                    if key in claims:
                        assert claims[key] < step_no, f"{key}: keep duplicates in a later step"
                        status, reason = "duplicate", "duplicate_notification"
                        if outcome.reaches_provider:  # the durable claim says so, in its branch
                            branches[(outcome.channel, LANE_OF_PRIORITY[req.priority], status,
                                      None)] += 1
                    else:
                        claims[key] = step_no
                        if outcome.reaches_provider:
                            branches[(outcome.channel, LANE_OF_PRIORITY[req.priority], status,
                                      outcome.provider_code)] += 1
                        if status == "sent":
                            ledger[key] += 1
                elif outcome.deduped:  # opted out: its send branch reads its claim, finds none
                    branches[(outcome.channel, LANE_OF_PRIORITY[req.priority], status, None)] += 1
                rows[(status, outcome.channel, reason)] += 1
                per_trace[trace][(status, outcome.channel, reason, outcome.device_id)] += 1
                raw_per_trace[trace][(status, outcome.channel, reason, outcome.device_id)] += 1
        dead_tokens |= failed_now
    # Addresses no request may ever reach, whatever its category: opted-out users' phones, emails
    # and tokens, phones of users who turned SMS off, tokens of disabled devices.
    never = set()
    for seeded in users.values():
        doc, devices = seeded.document, seeded.devices.values()
        if not doc["notification_enabled"]:
            never |= {doc["phone"], doc["email"], *(d["token"] for d in devices)}
        if doc["channels"]["sms"] is False:
            never.add(doc["phone"])
        never |= {d["token"] for d in devices if not d["notification_enabled"]}
    never.discard(None)
    return Expectation(rows, branches, dict(per_trace), dict(raw_per_trace), ledger, envelopes,
                       accepted_rows, dead_letters, never)


# --- fixtures ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def seeded_users(firestore_emulator: str) -> dict[str, SeedUser]:
    """Seeds the demo users into Firestore (this test's own project); returns them as the test
    reads them, straight from `demo_users`."""
    client = firestore.Client(project=PROJECT)
    seed(client, SEEDED_USERS)
    client.close()
    return {u.user_id: u for u in demo_users(SEEDED_USERS)}


@pytest.fixture
def sandbox() -> Iterator[sandbox_server.SandboxServer]:
    with sandbox_server.SandboxServer(port=0, latency_ms=5, project=PROJECT) as server:
        yield server


@pytest.fixture
def fresh_resources() -> Iterator[None]:
    """Close the senders this pipeline built in-process (the FCM one holds the firebase app name
    `herald`, which a later in-process pipeline could not take again) and AsyncWrapper's pools."""
    before = set(resources._RESOURCES)
    yield
    for key in set(resources._RESOURCES) - before:
        resource = resources._RESOURCES.pop(key)
        if hasattr(resource, "close"):
            resource.close()
    AsyncWrapper.reset_state()


def settings_for(sandbox: sandbox_server.SandboxServer) -> Settings:
    # callback_base_url only so TwilioSender puts the span id in the StatusCallback URL, where the
    # sandbox ledger reads it (nothing calls it back); without it SMS ledger entries have no span.
    return Settings(project=PROJECT, fcm_endpoint=sandbox.url, twilio_endpoint=sandbox.url,
                    sendgrid_endpoint=sandbox.url, callback_base_url="http://127.0.0.1:9")


def herald_options() -> HeraldOptions:
    return PipelineOptions(["--batch_shards=1", f"--dedupe_ttl_s={TTL_S}"]).view_as(HeraldOptions)


def streaming_pipeline() -> BeamTestPipeline:
    options = PipelineOptions([])  # not sys.argv: pytest's flags are not the pipeline's
    options.view_as(StandardOptions).streaming = True
    return BeamTestPipeline(options=options, blocking=False)


def request_stream(steps: list[list[Message]], clock_lead_s: float | None) -> BeamTestStream:
    stream = BeamTestStream()
    for number, step in enumerate(steps):
        stream.add_elements([m.pubsub for m in step], event_timestamp=10 * number + 1)
        stream.advance_watermark_to(10 * number + 10)
        if clock_lead_s is not None:
            # The TestClock starts at 0 (1970): the first advance moves it past the wall clock.
            # (Whole seconds: the runner API encodes the advance in milliseconds.)
            stream.advance_processing_time(int(time.time() + clock_lead_s) if number == 0 else 60)
    return stream.advance_watermark_to_infinity()


def _write_json(path: str):
    def write(actual):
        Path(path).write_text(json.dumps(list(actual)))
    return write


def send_branch_outputs(pipeline: beam.Pipeline) -> dict[tuple[str, str], beam.PCollection]:
    """The event output of each `Send_{channel}_{lane}` step, tapped to count what each branch
    itself produced (the events do not say which branch sent them)."""
    found: dict[tuple[str, str], beam.PCollection] = {}

    class Finder(PipelineVisitor):
        def visit_transform(self, node) -> None:
            parent, _, name = node.full_label.rpartition("/")
            if parent.endswith("/SendDeliveries") and name.startswith("Send_"):
                channel, lane = name[len("Send_"):].split("_")
                found[(channel, lane)] = node.outputs[None]

    pipeline.visit(Finder())
    assert sorted(found) == sorted(BRANCHES), f"send steps found: {sorted(found)}"
    return found


def counts_equal(expected: Counter):
    """An assert_that matcher comparing multisets, reporting only the difference."""
    expected = Counter(expected)

    def match(actual) -> None:
        got = Counter(actual)
        if got != expected:
            raise BeamAssertException(
                f"missing {dict(expected - got)}, unexpected {dict(got - expected)} "
                f"(expected {sum(expected.values())} elements, got {sum(got.values())})")
    return match


def _provider_result(event: dict) -> tuple:
    return (event["channel"], LANE_OF_PRIORITY[event["priority"]], event["status"],
            event["provider_code"])


def run_pipeline(steps, sandbox, events_file: Path, clock_lead_s: float | None,
                 expectation: Expectation | None = None, batch_rows: bool = False):
    """`batch_rows`: batch the event and dead-letter rows as the BigQuery sink does (its state
    encodes every row), without writing them."""
    pipeline = streaming_pipeline()
    outputs = (pipeline
               | "Requests" >> request_stream(steps, clock_lead_s)
               | "DeliverNotifications" >> DeliverNotifications(settings_for(sandbox), herald_options()))
    events = outputs["events"]
    if batch_rows:
        rows = (events, outputs["dead_letters"] | "DeadLetterRows" >> beam.Map(DeadLetter.to_row))
        for name, pcoll in zip(("Events", "DeadLetters"), rows):
            _ = (pcoll | f"Key{name}" >> beam.Map(lambda row: (0, row))
                 | f"Batch{name}" >> WriteBatching(rows=50, buffer_s=0.1).batch())
    if expectation is not None:
        # Every garbage message is parked whole for replay (nothing here exhausts its retries).
        assert_that(outputs["dead_letters"] | "DeadLetterReasons" >> beam.Map(
                        lambda d: (d.reason, d.source_topic, d.span_id)),
                    counts_equal({("invalid_message", settings_for(sandbox).requests_topic, None):
                                  expectation.dead_letters}), label="AssertDeadLetters")
        # In-pipeline, as multisets: every row by (status, channel, reason) ...
        assert_that(events | "StatusChannelReason" >> beam.Map(
                        lambda e: (e["status"], e["channel"], e["reason"])),
                    counts_equal(expectation.rows), label="AssertRows")
        # ... and what each of the six send branches output: only its own channel and lane, with
        # exactly the expected sent and provider-failed counts.
        for (channel, lane), output in send_branch_outputs(pipeline).items():
            want = Counter({row: n for row, n in expectation.branches.items()
                            if row[:2] == (channel, lane)})
            assert_that(output | f"Tap_{channel}_{lane}" >> beam.Map(_provider_result),
                        counts_equal(want), label=f"AssertBranch_{channel}_{lane}")
    # Every event row, for the span, trace and ledger checks after the run.
    assert_that(events, _write_json(str(events_file)), label="CollectEvents")
    result = pipeline.run()
    result.wait_until_finish()
    # The runner whose TestClock semantics the module docstring describes (not FnApi, not Prism).
    assert isinstance(result, DirectPipelineResult), type(result)
    return result, json.loads(events_file.read_text())


# --- the tests -----------------------------------------------------------------------------------

def test_every_element_is_counted_through_every_branch(
        seeded_users, sandbox, fresh_resources, tmp_path) -> None:
    steps = build_steps()
    want = expect(steps, seeded_users)
    # The input mix covers what it claims to (a guard on the fixture, not on the pipeline).
    reasons = {reason for (_, _, reason) in want.rows}
    assert reasons >= {None, "user_opted_out", "category_opted_out", "channel_opted_out",
                       "device_disabled", "unknown_user", "no_address", "provider_error",
                       "duplicate_notification", "invalid_message"}
    for channel, lane in BRANCHES:
        assert want.branches[(channel, lane, "sent", None)] > 0, (channel, lane)
    assert sum(want.branches[("push", lane, "failed", "UNREGISTERED")] for lane in LANE_NAMES) > 0
    assert 60 <= sum(map(len, steps)) <= 120

    started = time.monotonic()
    _, events = run_pipeline(steps, sandbox, tmp_path / "events.json", CLOCK_LEAD_S, want)
    elapsed = time.monotonic() - started

    # 1. Every row, by (status, channel, reason): the same table assert_that checked in-pipeline,
    #    repeated here so a failure prints a readable diff.
    got_rows = Counter((e["status"], e["channel"], e["reason"]) for e in events)
    assert got_rows == want.rows
    assert len(events) == sum(want.rows.values())

    # 2. Each of the six send branches: its sent and provider-failed results.
    #    (In-pipeline each branch's own output was checked; here the merged view, readable.)
    got_branches = Counter(_provider_result(e) for e in events if e["status"] in ("sent", "failed")
                           and e["reason"] in (None, "provider_error"))
    assert got_branches == Counter({result: n for result, n in want.branches.items()
                                    if result[2] in ("sent", "failed")})

    # 3. Per request: each envelope's own fate, device by device, with and without repeats.
    by_id = {e["event_id"]: e for e in events}
    distinct_per_trace: dict[str, Counter] = defaultdict(Counter)
    raw_per_trace: dict[str, Counter] = defaultdict(Counter)
    for e in events:
        if e["trace_id"] is None:
            continue
        row = (e["status"], e["channel"], e["reason"], e["device_id"])
        raw_per_trace[e["trace_id"]][row] += 1
    for e in by_id.values():
        if e["trace_id"] is not None:
            distinct_per_trace[e["trace_id"]][(e["status"], e["channel"], e["reason"],
                                               e["device_id"])] += 1
    assert dict(distinct_per_trace) == want.per_trace
    assert dict(raw_per_trace) == want.raw_per_trace

    # 4. One terminal event per delivery span (after dropping repeats by event_id, as staging
    #    does), and a repeat is only ever the very same row: the same id means the same event.
    terminal = [e for e in events if e["parent_span_id"] is not None]
    assert all(e["status"] in ("suppressed", "duplicate", "sent", "failed") for e in terminal)
    ids_per_span: dict[str, set[str]] = defaultdict(set)
    for e in terminal:
        ids_per_span[e["span_id"]].add(e["event_id"])
    assert {span: ids for span, ids in ids_per_span.items() if len(ids) != 1} == {}
    assert len(ids_per_span) == sum(n for per_trace in want.per_trace.values()
                                    for row, n in per_trace.items()
                                    if row[0] not in ("accepted", "resolved"))
    for e in events:
        same = by_id[e["event_id"]]
        assert {k: v for k, v in e.items() if k != "event_ts"} == \
            {k: v for k, v in same.items() if k != "event_ts"}

    # 5. Exactly one `accepted` event id per distinct envelope; a redelivery repeats that id.
    accepted = [e for e in events if e["status"] == "accepted"]
    assert len(accepted) == want.accepted_rows
    assert len({e["event_id"] for e in accepted}) == want.envelopes
    assert Counter(e["trace_id"] for e in accepted) == Counter(
        m.envelope.trace_id for step in steps for m in step if m.kind == "envelope")
    # A request's `resolved` event counts its deliveries: what `herald reconcile` completes against.
    spans_per_trace: dict[str, set[str]] = defaultdict(set)
    for e in terminal:
        spans_per_trace[e["trace_id"]].add(e["span_id"])
    assert {e["trace_id"]: e["deliveries"] for e in events if e["status"] == "resolved"} == \
        {trace: len(spans) for trace, spans in spans_per_trace.items()}
    dead = [e for e in events if e["status"] == "dead_letter"]
    assert len({e["event_id"] for e in dead}) == len(dead) == want.dead_letters

    # 6. The sandbox accepted exactly the sent spans, once each, at the expected addresses.
    ledger = [entry.delivery for entry in sandbox.ledger.entries()]
    sent = [e for e in events if e["status"] == "sent"]
    assert Counter(d.span_id for d in ledger) == Counter(e["span_id"] for e in sent)
    assert len(ledger) == len(sent) == sum(want.ledger.values())
    assert Counter((d.notification_id, d.channel.value, d.recipient) for d in ledger) == want.ledger
    assert {d.provider_message_id for d in ledger} == {e["provider_message_id"] for e in sent}
    reached = {d.recipient for d in ledger}
    assert want.never_reached and not (reached & want.never_reached)

    # Beam metrics are not asserted: under TestStream the BundleBasedDirectRunner 2.77 reports
    # only the first bundle's counters (a 3-step, 6-element probe reports 3), and the senders'
    # counters run on AsyncWrapper's pool threads, outside any metrics container. The events above
    # carry the same facts (redeliveries add no row, heartbeats add no dead letter).

    # About 6 s on an idle 2-core box, 17 s at load average 12: the guard catches a pipeline
    # that became an order of magnitude slower, it is no benchmark on a busy shared machine.
    assert elapsed < 120, f"pipeline took {elapsed:.1f} s"


def test_without_a_processing_time_advance_no_send_is_committed(
        seeded_users, sandbox, fresh_resources, tmp_path) -> None:
    """The evidence for the module docstring, and a guard on the assumption the test above rests on.

    With the TestClock left at the epoch, GroupIntoBatches still flushes (its end-of-window timer
    is event time, due at watermark +inf) and AsyncWrapper starts the sends on its pool, but its
    commit timer, set from time.time(), is never due. The runner stops anyway, because it waits
    only for processing-time timers of transforms whose watermark is not yet +inf. So the providers
    are called (the ledger fills up after the run) while no sent/failed event is ever output.
    """
    step = [envelope_message(Request(user(i), channel, "high", "delivery", f"n-{i}-{channel}"))
            for i in (1, 2) for channel in CHANNELS]  # user 1: 2 devices, user 2: 3 devices
    _, events = run_pipeline([step], sandbox, tmp_path / "events.json", clock_lead_s=None)
    assert Counter(e["status"] for e in events) == {"accepted": 6, "resolved": 6}
    deadline = time.monotonic() + 10
    while len(sandbox.ledger.entries()) < 9 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert Counter(d.delivery.channel.value for d in sandbox.ledger.entries()) == {
        "push": 5, "sms": 2, "email": 2}


def test_a_restarted_pipeline_does_not_resend_sms_or_email(
        seeded_users, sandbox, fresh_resources, tmp_path) -> None:
    """The same messages through a second pipeline (fresh keyed state, as after a restart or a
    redeploy): the Firestore claims answer for the first run, so the provider sees each SMS and
    email once and the replay records the same `sent` events again. (Push is claimed the same way;
    in-process, a second TestStream pipeline sending push stalled in a Firestore read, so push's
    restart is proven on the live stack by tests/chaos_test.py.)"""
    steps = [[envelope_message(Request(user(i), channel, "normal", "delivery", f"restart-{channel}-{i}"))
              for i in range(1, 13) for channel in ("sms", "email")]]
    sendable = {(m.request.notification_id, o.address) for m in steps[0]
                for o in outcomes(m.request, seeded_users, set()) if o.status == "sent"}
    assert len(sendable) > 10, "the restart input reaches too few providers to mean anything"

    _, first = run_pipeline(steps, sandbox, tmp_path / "first.json", CLOCK_LEAD_S)
    _, second = run_pipeline(steps, sandbox, tmp_path / "second.json", CLOCK_LEAD_S)

    ledger = Counter((e["notification_id"], e["recipient"])
                     for e in (entry.to_json() for entry in sandbox.ledger.entries())
                     if e["notification_id"].startswith("restart-"))
    assert set(ledger) == sendable and set(ledger.values()) == {1}
    sent_ids = [{e["event_id"] for e in run if e["status"] == "sent"} for run in (first, second)]
    assert sent_ids[0] == sent_ids[1] and len(sent_ids[0]) == len(sendable)


def test_a_send_the_user_opted_out_of_afterwards_stays_sent_after_a_restart(
        seeded_users, sandbox, fresh_resources, tmp_path) -> None:
    """SMS and emails are sent, one of them templated (in German); the users then reply STOP and
    unsubscribe (the provider opt-outs the callbacks record); the same requests reach a fresh
    pipeline (a restart whose first run's events were lost, or the reconciler's replay), which now
    plans them opted out, as it plans a new request to the same users in that run. Their own claims
    say they were sent: the replay records the same `sent` events, locale included, not
    `suppressed` (the analytics would lose a send the provider took), and the provider is not
    called again."""
    chosen = [(user(i), channel) for channel in ("sms", "email") for i in [
        i for i in range(1, SEEDED_USERS)
        if [o.status for o in outcomes(Request(user(i), channel, "normal", "delivery", "x"),
                                       seeded_users, set())] == ["sent"]][:2]]
    assert len(chosen) == 4
    client = firestore.Client(project=PROJECT)
    users.user_ref(client, "stop-tpl").set({users.EMAIL: "stop-tpl@example.com",
                                            users.LOCALE: "de-AT"})
    store = TemplateStore(state_client(settings_for(sandbox)))
    for locale, body in TRANSLATIONS.items():
        store.put("order_shipped", locale, parse_translation(body), body.get("default", False))
    first_requests = [envelope_message(Request(u, channel, "normal", "delivery", f"stop-{channel}-{u}"))
                      for u, channel in chosen]
    first_requests.append(templated_message("stop-tpl-email", "email", ["stop-tpl"], orderId="A-19"))
    later_requests = [envelope_message(Request(u, channel, "normal", "delivery", f"later-{channel}-{u}"))
                      for u, channel in chosen]
    _, first = run_pipeline([first_requests], sandbox, tmp_path / "first.json", CLOCK_LEAD_S)
    directory = Directory(settings_for(sandbox))
    opted_out = [*chosen, ("stop-tpl", "email")]
    for user_id, channel in opted_out:
        directory.record_opt_out(user_id, Channel(channel), "pipeline-test", "STOP",
                                 "2026-01-01T00:00:00Z")
    try:
        _, second = run_pipeline([first_requests + later_requests], sandbox,
                                 tmp_path / "second.json", CLOCK_LEAD_S)
    finally:
        for user_id, channel in opted_out:
            directory.lift_opt_out(user_id, Channel(channel), "pipeline-test",
                                   "2026-01-01T00:00:00Z")

    def terminal(run: list[dict], prefix: str) -> set[tuple]:
        return {(e["event_id"], e["status"], e["reason"], e["provider_message_id"], e["locale"])
                for e in run if e["parent_span_id"] is not None
                and e["notification_id"].startswith(prefix)}

    assert terminal(first, "stop-") == terminal(second, "stop-")
    assert [(row[1], row[4]) for row in terminal(first, "stop-tpl")] == [("sent", "de")]
    assert [row[1] for row in terminal(first, "stop-")] == ["sent"] * len(opted_out)
    # The opt-outs were in force in the second run: its new requests to the same users are not sent.
    assert {row[1:3] for row in terminal(second, "later-")} == {("suppressed", "provider_opted_out")}
    assert len(terminal(second, "later-")) == len(chosen)
    ledger = Counter(entry.delivery.span_id for entry in sandbox.ledger.entries()
                     if (entry.delivery.notification_id or "").startswith(("stop-", "later-")))
    assert len(ledger) == len(opted_out) and set(ledger.values()) == {1}


def test_a_restart_meeting_a_household_in_another_order_records_the_send_it_made(
        seeded_users, sandbox, fresh_resources, tmp_path) -> None:
    """A bulk SMS and email to a household sharing a phone and an email, then the same request
    again through a fresh pipeline (a restart whose first run's events were lost) that meets the
    two users in the other order, as a runner may. The Firestore claims decide which delivery
    took the address: the one the provider saw ends `sent` in both runs, the other `duplicate`;
    a fresh pipeline's keyed state must not call the sent one a duplicate because its sibling
    came first this time."""
    first_user, second_user = household(0)
    body = {"userIds": [first_user, second_user], "notificationId": "household-restart",
            "serviceType": "orders", "categoryType": "delivery", "templateType": "order_update",
            "priority": "normal", "notificationInfo": {"title": "Update", "content": "for the home"}}
    runs = []
    for users_in_order in ([first_user, second_user], [second_user, first_user]):
        messages = []
        for channel in ("sms", "email"):
            envelope = new_envelope(parse_request(
                {**body, "userIds": users_in_order, "notificationType": channel,
                 "notificationId": f"household-restart-{channel}"}, generate_id=False),
                "pipeline-test")
            envelope = dataclasses.replace(envelope, trace_id=f"household-{channel}")
            data, attributes = envelope.to_pubsub()
            messages.append(Message(PubsubMessage(data, attributes, message_id=f"m-{next(_ids)}"),
                                    "envelope", None, envelope))
        runs.append(run_pipeline([messages], sandbox, tmp_path / f"run-{len(runs)}.json",
                                 CLOCK_LEAD_S)[1])
    ledger = Counter(entry.delivery.span_id for entry in sandbox.ledger.entries()
                     if (entry.delivery.notification_id or "").startswith("household-restart"))
    assert len(ledger) == 2 and set(ledger.values()) == {1}, ledger
    for run in runs:
        outcomes = {e["span_id"]: e["status"] for e in run if e["status"] in ("sent", "duplicate")}
        assert {span for span, status in outcomes.items() if status == "sent"} == set(ledger), run
        assert Counter(outcomes.values()) == {"sent": 2, "duplicate": 2}


# --- hostile input (issue 9) -----------------------------------------------------------------------

def hostile_stream() -> list[PubsubMessage]:
    template = json.loads(envelope_message(
        Request(user(3), "push", "high", "delivery", "hostile")).pubsub.data)
    return [PubsubMessage(data, {"channel": "push"}, message_id=f"m-{next(_ids)}")
            for data in hostile_messages(template)]


def test_hostile_values_in_any_field_never_stop_the_pipeline(
        seeded_users, sandbox, fresh_resources, tmp_path) -> None:
    """Issue 9: no value of any field a sender controls stops the pipeline or loses another
    request: each hostile message is parked with its reason, or planned and ended like any
    other request; a valid request in the same bundle is sent."""
    valid = envelope_message(Request(user(1), "email", "high", "delivery", "after-hostile"))
    hostile = hostile_stream()
    steps = [[Message(m, "hostile") for m in hostile] + [valid]]
    _, events = run_pipeline(steps, sandbox, tmp_path / "events.json", CLOCK_LEAD_S,
                             batch_rows=True)

    sent = [e for e in events if e["status"] == "sent"]
    assert [e["notification_id"] for e in sent if e["trace_id"] == valid.envelope.trace_id] == \
        ["after-hostile"]
    dead = [e for e in events if e["status"] == "dead_letter"]
    assert {e["reason"] for e in dead} <= {"invalid_message", "unprocessable"}
    resolved = {e["trace_id"] for e in events if e["status"] == "resolved"}
    # Each hostile message either was parked whole or was planned (resolved) like a request.
    assert len(dead) + len(resolved - {valid.envelope.trace_id}) == len(hostile)
    ended = Counter(e["trace_id"] for e in events
                    if e["parent_span_id"] is not None and e["status"] in
                    ("suppressed", "duplicate", "sent", "failed", "dead_letter"))
    planned = {e["trace_id"]: e["deliveries"] for e in events if e["status"] == "resolved"}
    assert {trace: ended[trace] for trace in planned} == planned


# --- templates (issue 13) -------------------------------------------------------------------------

TRANSLATIONS = {
    "en": {"title": "Order {{ orderId }}", "content": "Shipped", "default": True,
           "email_subject": "Order {{ orderId }} shipped", "email_html": "<b>{{ orderId }}</b>"},
    "ko": {"title": "주문 {{ orderId }}", "content": "발송",
           "email_subject": "주문 {{ orderId }} 발송"},
    "de": {"title": "Bestellung {{ orderId }}", "content": "Versandt",
           "email_subject": "Bestellung {{ orderId }} versandt"},
}


def templated_message(notification_id: str, channel: str, user_ids: list[str],
                      template_type: str = "order_shipped", **variables: str) -> Message:
    body = {"userIds": user_ids, "notificationId": notification_id, "serviceType": "orders",
            "categoryType": "delivery", "notificationType": channel,
            "templateType": template_type, "notificationInfo": {"variables": variables}}
    envelope = new_envelope(parse_request(body, generate_id=False), "pipeline-test")
    data, attributes = envelope.to_pubsub()
    return Message(PubsubMessage(data, attributes, message_id=f"m-{next(_ids)}"), "envelope",
                   envelope=envelope)


def test_templated_requests_reach_each_user_in_their_language(
        firestore_emulator, sandbox, fresh_resources, tmp_path) -> None:
    """A template in three locales: each user's email and push are in their language (ko-KR ->
    ko, de-AT -> de, fr-FR -> the default en), variables filled, the locale used on each event;
    an unknown template or a missing variable ends each delivery `failed` (template_error)."""
    client = firestore.Client(project=PROJECT)
    locales = {"tpl-ko": "ko-KR", "tpl-de": "de-AT", "tpl-fr": "fr-FR"}
    for user_id, locale in locales.items():
        users.user_ref(client, user_id).set({users.EMAIL: f"{user_id}@example.com",
                                             users.LOCALE: locale})
        users.device_ref(client, user_id, "phone").set({users.PLATFORM: "android",
                                                        users.TOKEN: f"tok-{user_id}"})
    store = TemplateStore(state_client(settings_for(sandbox)))
    for locale, body in TRANSLATIONS.items():
        store.put("order_shipped", locale, parse_translation(body), body.get("default", False))
    audience = sorted(locales)
    steps = [[templated_message("tpl-email", "email", audience, orderId="A-17"),
              templated_message("tpl-push", "push", audience, orderId="A-18"),
              templated_message("tpl-missing", "email", ["tpl-ko"]),
              templated_message("tpl-unknown", "email", ["tpl-de"], template_type="nope")]]
    _, events = run_pipeline(steps, sandbox, tmp_path / "events.json", CLOCK_LEAD_S)

    sent = {(e["notification_id"], e["user_id"]): e["locale"]
            for e in events if e["status"] == "sent"}
    assert sent == {(n, u): {"tpl-ko": "ko", "tpl-de": "de", "tpl-fr": "en"}[u]
                    for n in ("tpl-email", "tpl-push") for u in audience}
    received = {(e["notification_id"], e["recipient"]): e["text"]
                for e in (entry.to_json() for entry in sandbox.ledger.entries())
                if e["notification_id"].startswith("tpl-")}
    assert received == {
        ("tpl-email", "tpl-ko@example.com"): "주문 A-17 발송",
        ("tpl-email", "tpl-de@example.com"): "Bestellung A-17 versandt",
        ("tpl-email", "tpl-fr@example.com"): "Order A-17 shipped",
        ("tpl-push", "tok-tpl-ko"): "주문 A-18",
        ("tpl-push", "tok-tpl-de"): "Bestellung A-18",
        ("tpl-push", "tok-tpl-fr"): "Order A-18"}
    failed = {e["notification_id"]: (e["reason"], e["detail"])
              for e in events if e["status"] == "failed"}
    assert failed.keys() == {"tpl-missing", "tpl-unknown"}
    assert failed["tpl-missing"][0] == failed["tpl-unknown"][0] == "template_error"
    assert "orderId" in failed["tpl-missing"][1] and "nope" in failed["tpl-unknown"][1]
