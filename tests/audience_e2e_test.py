"""An audience send on the whole local stack: a topic of a few thousand seeded users, read in
pages of 100 (HERALD_AUDIENCE_PAGE_SIZE), some of them households sharing an email address and a
device. Every subscriber gets exactly one outcome per delivery, non-subscribers none, and the
`audience` progress events add up to the `audience_complete` event's size."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from herald.bench.audience import audience_outcomes, post_topic_send, sendgrid_requests, subscribe
from herald.clients import bigquery_client, firestore_client
from herald.local import stack
from herald.local.drain import wait_for_drain
from herald.local.seed import HOUSEHOLDS, household
from herald.settings import Settings

pytestmark = pytest.mark.slow
USERS, PAGE_SIZE = 2500, 100


@pytest.fixture(scope="module")
def audience_stack(tmp_path_factory: pytest.TempPathFactory):
    with stack.running(tmp_path_factory.mktemp("audience-state"), seed_users=USERS,
                       HERALD_AUDIENCE_PAGE_SIZE=str(PAGE_SIZE)) as env:
        yield env


def test_every_subscriber_of_a_topic_gets_exactly_one_outcome(audience_stack: dict[str, str]) -> None:
    env, settings = audience_stack, Settings.from_env(audience_stack)
    topic = "weekly-digest"
    subscribers = {f"user-{n:05d}" for n in range(USERS) if n % 3 != 2}
    subscribers |= {user for index in range(HOUSEHOLDS) for user in household(index)}
    subscribe(firestore_client(settings), sorted(subscribers - {"user-00000", "user-00001"}), topic)
    api = {"Authorization": f"Bearer {env['HERALD_API_KEY']}"}
    # Through the registry API too: one subscribes, one subscribes and leaves again.
    for user_id in ("user-00000", "user-00002"):
        assert requests.put(f"{env['HERALD_API_URL']}/v1/users/{user_id}/topics/{topic}",
                            headers=api, timeout=10).status_code == 204
    assert requests.delete(f"{env['HERALD_API_URL']}/v1/users/user-00002/topics/{topic}",
                           headers=api, timeout=10).status_code == 204
    subscribers -= {"user-00001"}

    trace = post_topic_send(env["HERALD_API_URL"], env["HERALD_API_KEY"], topic, "email",
                            "digest-1")
    client = bigquery_client(settings)
    wait_for_drain(client, settings, [trace], timeout_s=240)

    outcomes = audience_outcomes(client, settings, trace)
    assert outcomes.check(subscribers) == []
    assert len(outcomes.pages) == len(subscribers) // PAGE_SIZE + 1
    # Households share an address: one of each pair is sent, the other is its duplicate.
    assert outcomes.statuses["duplicate"] == HOUSEHOLDS
    assert outcomes.statuses["suppressed"] > 0  # every 10th seeded user switched everything off
    requests_made, recipients = sendgrid_requests(env["HERALD_SANDBOX_URL"], "digest-1")
    assert recipients == outcomes.statuses["sent"]
    assert requests_made <= len(outcomes.pages) * 2  # a page is one batch, split at most by a timer
