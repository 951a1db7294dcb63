"""HeraldOptions: runner-dependent defaults (the DirectRunner's, else production's, flags first)
and the settings the flags resolve to."""

from __future__ import annotations

import json
from types import SimpleNamespace

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms.async_dofn import AsyncWrapper

from herald.settings import Settings
from pipelines.bigquery_sink import WriteBatching
from pipelines.options import (DIRECT_DEDUPE_BUCKETS, DIRECT_WRITE_BATCHING, dedupe_buckets,
                               resolve_settings, subscription_path, write_batching)


@pytest.mark.parametrize("runner_args", [[], ["--runner", "DirectRunner"]])
def test_the_direct_runner_gets_its_own_defaults(runner_args: list[str]) -> None:
    options = PipelineOptions(runner_args)
    assert write_batching(options) == DIRECT_WRITE_BATCHING != WriteBatching()
    assert dedupe_buckets(options) == DIRECT_DEDUPE_BUCKETS


def test_other_runners_get_production_defaults() -> None:
    options = PipelineOptions(["--runner", "DataflowRunner"])
    assert write_batching(options) == WriteBatching(rows=500, buffer_s=0.5)
    assert dedupe_buckets(options) == 0


def test_flags_win_over_any_default() -> None:
    options = PipelineOptions(["--runner", "DirectRunner", "--write_batch_rows", "50",
                               "--write_buffer_s", "0", "--dedupe_buckets", "0"])
    assert write_batching(options) == WriteBatching(rows=50, buffer_s=0.0,
                                                    concurrency=DIRECT_WRITE_BATCHING.concurrency)
    assert dedupe_buckets(options) == 0


def test_settings_take_flags_then_environment_then_the_jobs_project(monkeypatch) -> None:
    for name in ("HERALD_PROJECT", "GOOGLE_CLOUD_PROJECT", "HERALD_CALLBACKS_SUBSCRIPTION"):
        monkeypatch.delenv(name, raising=False)
    job = ["--runner", "DataflowRunner", "--project", "job-project"]
    assert resolve_settings(PipelineOptions(job)).project == "job-project"
    monkeypatch.setenv("HERALD_PROJECT", "env-project")
    monkeypatch.setenv("HERALD_CALLBACKS_SUBSCRIPTION", "env-callbacks")
    settings = resolve_settings(PipelineOptions(job))
    assert (settings.project, settings.callbacks_subscription) == ("env-project", "env-callbacks")
    settings = resolve_settings(PipelineOptions([*job, "--herald_project", "flag-project",
                                                 "--callbacks_subscription", "flag-callbacks"]))
    assert (settings.project, settings.callbacks_subscription) == ("flag-project", "flag-callbacks")


def test_a_subscription_is_an_id_or_a_full_path() -> None:
    settings = Settings(project="p")
    assert subscription_path(settings, "s") == "projects/p/subscriptions/s"
    assert subscription_path(settings, "projects/q/subscriptions/s") == "projects/q/subscriptions/s"


class _SecretManager:
    """Secret Manager's client, which cannot be reached here: the values it holds, by name."""

    values = {"projects/herald-p/secrets/twilio-token/versions/latest": "token-from-secret",
              "projects/other/secrets/sendgrid/versions/latest": "SG.from-secret"}

    def access_secret_version(self, name: str):
        return SimpleNamespace(payload=SimpleNamespace(data=self.values[name].encode()))


def test_settings_env_and_secrets_fill_what_the_launcher_has_no_environment_for(
        monkeypatch) -> None:
    from google.cloud import secretmanager

    monkeypatch.setattr(secretmanager, "SecretManagerServiceClient", _SecretManager)
    monkeypatch.setenv("TWILIO_FROM_NUMBER", "+15550000001")
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "token-from-environment")
    settings = resolve_settings(PipelineOptions([
        "--herald_project", "herald-p",
        "--settings_env", json.dumps({"TWILIO_FROM_NUMBER": "+15550000002"}),
        "--secret_env", json.dumps({"TWILIO_AUTH_TOKEN": "twilio-token",
                                    "SENDGRID_API_KEY": "projects/other/secrets/sendgrid"})]))
    assert settings.twilio_from_number == "+15550000002"
    assert settings.twilio_auth_token == "token-from-secret"
    assert settings.sendgrid_api_key == "SG.from-secret"


def test_settings_env_must_be_a_json_object_of_strings() -> None:
    with pytest.raises(ValueError, match="--settings_env"):
        resolve_settings(PipelineOptions(["--settings_env", '["TWILIO_FROM_NUMBER"]']))


def test_only_a_write_step_with_concurrency_runs_on_a_pool() -> None:
    """WriteBatching.concurrency decides the step's shape: Dataflow's plain ParDo, or the
    DirectRunner's AsyncWrapper (which the write tests can pass either way)."""
    dofn = beam.DoFn()
    assert not isinstance(WriteBatching().write(dofn, "event_id").fn, AsyncWrapper)
    assert isinstance(DIRECT_WRITE_BATCHING.write(dofn, "event_id").fn, AsyncWrapper)
