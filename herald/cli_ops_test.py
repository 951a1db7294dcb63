"""The ops commands' configuration, through `herald` itself: each setting from its flag, else the
environment (HERALD_*), else the local stack's local.env, else Herald's default; and a named
project other than the stack's never picks up the stack's file. `herald dlq replay` on the Pub/Sub
emulator shows which project and topic a run used: each has its own count of parked items."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from herald.cli import OPS_SETTINGS, main
from herald.dead_letters import REPLAYABLE_REASONS
from herald.dlq_test import delivery, park
from herald.events import Reason
from herald.local.provision import create_topics
from herald.settings import Settings

pytestmark = pytest.mark.filterwarnings("ignore:The return_immediately flag:DeprecationWarning")


@pytest.fixture
def environ() -> Iterator[None]:
    """The commands write their resolved environment into os.environ: restore it afterwards."""
    saved = dict(os.environ)
    for name in [name for name in os.environ if name.startswith("HERALD_")]:
        del os.environ[name]
    yield
    os.environ.clear()
    os.environ.update(saved)


def project_with_parked(count: int, **names: str) -> Settings:
    """A fresh project on the emulator with `count` dead letters parked on its dead-letter topic."""
    settings = Settings(project=f"ops-{uuid.uuid4().hex[:8]}", **names)
    create_topics(settings)
    park(settings, *(delivery(settings, Reason.RETRIES_EXHAUSTED.value) for _ in range(count)))
    return settings


def write_local_env(state_dir: Path, **variables: str) -> Path:
    state_dir.mkdir(exist_ok=True)
    (state_dir / "local.env").write_text("".join(f"{k}={v}\n" for k, v in variables.items()))
    return state_dir


def replayed(capsys: pytest.CaptureFixture, state_dir: Path, *flags: str) -> str:
    main(["--state-dir", str(state_dir), "dlq", "replay", *flags])
    return capsys.readouterr().out.split(" dead letters")[0]


def test_flag_over_environment_over_local_env(pubsub_emulator: str, environ: None,
                                              tmp_path: Path, capsys) -> None:
    stack, shell, flag = project_with_parked(1), project_with_parked(2), project_with_parked(3)
    os.environ.pop("PUBSUB_EMULATOR_HOST")  # only the local stack's file names the emulator
    state_dir = write_local_env(tmp_path / "stack", HERALD_PROJECT=stack.project,
                                PUBSUB_EMULATOR_HOST=pubsub_emulator)
    assert replayed(capsys, state_dir) == "replayed 1"

    os.environ.update(HERALD_PROJECT=shell.project, PUBSUB_EMULATOR_HOST=pubsub_emulator)
    assert replayed(capsys, state_dir) == "replayed 2"
    assert replayed(capsys, state_dir, "--project", flag.project) == "replayed 3"


def test_each_setting_resolves_on_its_own(pubsub_emulator: str, environ: None, tmp_path: Path,
                                          capsys) -> None:
    """The stack's project with the environment's dead-letter topic, then the flag's."""
    stack = project_with_parked(1, dead_letter_topic="dl-stack")
    for count, topic in ((2, "dl-shell"), (3, "dl-flag")):
        settings = Settings(project=stack.project, dead_letter_topic=topic)
        create_topics(settings)
        park(settings, *(delivery(settings, Reason.RETRIES_EXHAUSTED.value) for _ in range(count)))
    state_dir = write_local_env(tmp_path / "stack", HERALD_PROJECT=stack.project,
                                HERALD_DEAD_LETTER_TOPIC="dl-stack")
    os.environ["HERALD_DEAD_LETTER_TOPIC"] = "dl-shell"
    assert replayed(capsys, state_dir, "--dead-letter-topic", "dl-flag") == "replayed 3"
    assert replayed(capsys, state_dir) == "replayed 2"
    del os.environ["HERALD_DEAD_LETTER_TOPIC"]
    assert replayed(capsys, state_dir) == "replayed 1"


def test_another_named_project_ignores_the_local_stack(pubsub_emulator: str, environ: None,
                                                       tmp_path: Path, capsys) -> None:
    real = project_with_parked(2)
    state_dir = write_local_env(tmp_path / "stack", HERALD_PROJECT="herald-local",
                                HERALD_DEAD_LETTER_TOPIC="no-such-topic")
    assert replayed(capsys, state_dir, "--project", real.project) == "replayed 2"


def test_no_local_stack_is_needed(pubsub_emulator: str, environ: None, tmp_path: Path,
                                  capsys) -> None:
    real = project_with_parked(1)
    os.environ["HERALD_PROJECT"] = real.project
    assert replayed(capsys, tmp_path / "never-started") == "replayed 1"


@pytest.mark.parametrize("field", sorted(OPS_SETTINGS))
def test_each_flags_variable_is_the_one_settings_reads(field: str) -> None:
    variable, _ = OPS_SETTINGS[field]
    assert getattr(Settings.from_env({variable: "from-the-flag"}), field) == "from-the-flag"


def test_dlq_replay_takes_only_a_reason_items_are_parked_for(capsys) -> None:
    """A new user's try: `--reason bogus` quietly replayed nothing; a typo now is an error naming
    the reasons, and the help lists every replayable one (provider_configuration included)."""
    with pytest.raises(SystemExit) as exited:
        main(["dlq", "replay", "--reason", "bogus"])
    assert exited.value.code == 2
    assert "provider_configuration" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["dlq", "replay", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert all(reason in help_text for reason in REPLAYABLE_REASONS)
    assert "row_rejected" not in help_text
