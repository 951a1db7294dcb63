"""The Flex Templates: metadata generated from the options, valid for Dataflow, and each job's
Dataflow graph built offline through the template's launcher entry point (pipelines/templates/main.py)
reading and writing exactly the resources herald/settings.py names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from dataclasses import fields
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator

import pytest
from apache_beam.internal import pickler
from apache_beam.portability import common_urns
from apache_beam.portability.api import beam_runner_api_pb2
from google.cloud.dataflow_v1beta3.types import ParameterType, TemplateMetadata

from herald import flex_templates, shipping
from herald.dead_letters import DEAD_LETTERS_TABLE
from herald.flex_templates import ROOT, TEMPLATES, TEMPLATES_DIR, FlexTemplate
from herald.settings import Settings

PROJECT = "herald-prod"
"""The job's --project; no Herald flag and no HERALD_* variable, as a Flex Template launches."""

LOCAL_ENVIRONMENT = ("HERALD_", "PUBSUB_EMULATOR", "FIRESTORE_EMULATOR", "BIGQUERY_API",
                     "GOOGLE_CLOUD_PROJECT", "TWILIO_", "SENDGRID_")


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda t: t.job)
def test_metadata_is_generated_from_the_options(template: FlexTemplate) -> None:
    committed = template.metadata_path.read_text()
    assert committed == flex_templates.render_metadata(template), (
        f"{template.metadata_path} differs from pipelines/options.py: run `herald schema --write`")


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda t: t.job)
def test_metadata_is_valid_dataflow_template_metadata(template: FlexTemplate) -> None:
    metadata = TemplateMetadata.from_json(template.metadata_path.read_text(),
                                          ignore_unknown_fields=False)
    assert metadata.streaming
    by_name = {parameter.name: parameter for parameter in metadata.parameters}
    assert "herald_project" in by_name and "dataset" in by_name
    assert by_name["batch_shards"].param_type == ParameterType.NUMBER
    assert by_name["batch_shards"].default_value == "1"


def test_each_template_takes_its_own_jobs_flags() -> None:
    names = {template.job: {p.name for p in TemplateMetadata.from_json(
        template.metadata_path.read_text()).parameters} for template in TEMPLATES}
    assert {"requests_subscription", "dedupe_ttl_s"} <= names["delivery"] - names["callbacks"]
    assert "callbacks_subscription" in names["callbacks"] - names["delivery"]


@pytest.fixture(scope="module", params=TEMPLATES, ids=lambda t: t.job)
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> tuple[FlexTemplate, Path]:
    """The template's job built for Dataflow, offline: a local --template_location with a localhost
    --dataflow_endpoint writes template.json and staging/pipeline.pb without contacting Google."""
    template: FlexTemplate = request.param
    out = tmp_path_factory.mktemp(template.job)
    for folder in ("staging", "temp"):
        (out / folder).mkdir()
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(LOCAL_ENVIRONMENT)}
    env.update(PYTHONPATH=str(ROOT), HERALD_PIPELINE=template.module)
    subprocess.run(
        [sys.executable, str(TEMPLATES_DIR / "main.py"), "--runner", "DataflowRunner",
         "--project", PROJECT, "--region", "europe-west1",
         "--template_location", str(out / "template.json"),
         "--staging_location", str(out / "staging"), "--temp_location", str(out / "temp"),
         "--dataflow_endpoint", "http://localhost:9", "--no_auth",
         "--setup_file", str(ROOT / "setup.py")],
        cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)
    return template, out


def _graph(out: Path) -> beam_runner_api_pb2.Pipeline:
    graph = beam_runner_api_pb2.Pipeline()
    graph.ParseFromString((out / "staging" / "pipeline.pb").read_bytes())
    return graph


def _dofns(graph: beam_runner_api_pb2.Pipeline) -> dict[str, Any]:
    """Every ParDo's DoFn, unpickled as a worker unpickles it: transform name -> DoFn."""
    dofns = {}
    for name, transform in graph.components.transforms.items():
        if transform.spec.urn == common_urns.primitives.PAR_DO.urn:
            payload = beam_runner_api_pb2.ParDoPayload.FromString(transform.spec.payload)
            dofns[name] = pickler.loads(payload.do_fn.payload)
    return dofns


def _strings(root: Any) -> Iterator[str]:
    """Every string held by `root` or the objects it holds (attributes, containers, partials)."""
    todo, seen = [root], set()
    while todo:
        item = todo.pop()
        if id(item) in seen or item is None or isinstance(item, (bytes, int, float, type, ModuleType)):
            continue
        seen.add(id(item))
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            todo.extend([*item.keys(), *item.values()])
        elif isinstance(item, (list, tuple, set, frozenset)):
            todo.extend(item)
        elif isinstance(item, partial):
            todo.extend([item.func, *item.args, *item.keywords.values()])
        elif hasattr(item, "__dict__"):
            todo.extend(vars(item).values())


def test_the_job_is_a_streaming_job(built: tuple[FlexTemplate, Path]) -> None:
    _, out = built
    assert json.loads((out / "template.json").read_text())["type"] == "JOB_TYPE_STREAMING"


def test_the_job_reads_the_subscription_settings_names(built: tuple[FlexTemplate, Path]) -> None:
    template, out = built
    names = Settings(project=PROJECT)
    subscription = {"delivery": names.requests_subscription,
                    "callbacks": names.callbacks_subscription}[template.job]
    reads = [beam_runner_api_pb2.PubSubReadPayload.FromString(transform.spec.payload)
             for transform in _graph(out).components.transforms.values()
             if transform.spec.urn == common_urns.composites.PUBSUB_READ.urn]
    assert [(read.subscription, read.topic) for read in reads] == [
        (names.subscription_path(subscription), "")]


def test_every_dofn_unpickles_and_names_only_the_settings_resources(
        built: tuple[FlexTemplate, Path]) -> None:
    """The tables, the topics (the dead-letter topic at least) and the state database the workers
    will use are names herald/settings.py gives (terraform's drift test holds terraform to them)."""
    _, out = built
    names = Settings(project=PROJECT)
    held = {text for dofn in _dofns(_graph(out)).values() for text in _strings(dofn)}
    assert {text for text in held if text.startswith(f"{PROJECT}.")} == {
        names.events_table, names.table(DEAD_LETTERS_TABLE)}
    paths = {text for text in held if text.startswith("projects/")}
    assert names.topic_path(names.dead_letter_topic) in paths
    assert paths <= {names.topic_path(getattr(names, field.name)) for field in fields(Settings)
                     if field.name.endswith("_topic")}
    assert names.state_database in held
    assert not [text for text in held if Settings.from_env({}).project in text]  # no local default


def test_the_staged_package_holds_runtime_modules_only(built: tuple[FlexTemplate, Path]) -> None:
    """workflow.tar.gz is the sdist of --setup_file that Dataflow installs on every worker."""
    _, out = built
    with tarfile.open(out / "staging" / "workflow.tar.gz") as package:
        top = package.getnames()[0].split("/")[0]
        shipped = {name.removeprefix(f"{top}/") for name in package.getnames()
                   if name.endswith(".py")}
    runtime = {str(path.relative_to(ROOT)) for path in shipping.runtime_modules().values()}
    assert shipped == runtime | {"setup.py"}


def test_the_dockerfile_builds_each_templates_launcher() -> None:
    """Each job's image is the Dockerfile with its module as PIPELINE, and the launcher runs the
    main.py the graph tests above run."""
    dockerfile = (TEMPLATES_DIR / "Dockerfile").read_text()
    for template in TEMPLATES:
        assert f"--build-arg PIPELINE={template.module}" in dockerfile
    assert "COPY pipelines/templates/main.py /template/main.py" in dockerfile
    assert "ENV FLEX_TEMPLATE_PYTHON_PY_FILE=/template/main.py" in dockerfile
    assert "ENV FLEX_TEMPLATE_PYTHON_SETUP_FILE=/template/setup.py" in dockerfile
