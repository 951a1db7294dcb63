"""terraform/ against the code, offline (`terraform validate` needs the google provider, which
cannot be installed here): the generated names and schemas are current, the HCL is formatted, it
uses only names the generated files give and the code reads, and checkov passes with Herald's own
policies (terraform/policies/)."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterator

import hcl2
import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore
from google.cloud.firestore_v1.query import Query
from hcl2 import SerializationOptions

from herald import dead_letters, events, infrastructure
from herald.settings import Settings
from ingest_function.outbox import Outbox
from pipelines.options import HeraldOptions

TERRAFORM = infrastructure.TERRAFORM_DIR
REPO = TERRAFORM.parent
CHECKOV = REPO / ".venv-checkov" / "bin" / "checkov"
GENERATED = infrastructure.GENERATED_DIR
BASIC_ROLES = ("roles/owner", "roles/editor", "roles/viewer")
LOCAL_ALIASES = {"herald": (), "topics": ("pubsub", "topics"),
                 "subscriptions": ("pubsub", "subscriptions"), "function": ("function",),
                 "secrets": ("secrets",)}
"""The root module's locals that are (parts of) generated/names.json."""


def parse(path: Path) -> dict[str, Any]:
    with path.open() as handle:
        return hcl2.load(handle, serialization_options=SerializationOptions(strip_string_quotes=True))


def tf_files() -> list[Path]:
    return sorted(TERRAFORM.rglob("*.tf"))


def strings(node: Any) -> Iterator[str]:
    """Every string in a parsed HCL document (values, expressions), keys included."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)


def blocks(document: dict[str, Any], kind: str) -> dict[str, Any]:
    """`module`/`variable`/`output` blocks of a parsed file: name -> body."""
    return {name: body for block in document.get(kind, []) for name, body in block.items()}


def resources(document: dict[str, Any], resource_type: str) -> dict[str, Any]:
    return {name: body for block in document.get("resource", [])
            for kind, named in block.items() if kind == resource_type
            for name, body in named.items()}


def root_module(name: str) -> dict[str, Any]:
    return blocks(parse(TERRAFORM / "main.tf"), "module")[name]


def names() -> dict[str, Any]:
    return json.loads((GENERATED / "names.json").read_text())


def resolve(reference: str) -> Any:
    """`local.subscriptions.requests_pipeline.name` -> its value in generated/names.json."""
    local, *path = reference.split(".")[1:]
    value = names()
    for key in (*LOCAL_ALIASES[local], *path):
        value = value[key]
    return value


# --- generated files ---------------------------------------------------------------------------

def test_generated_files_are_current() -> None:
    """Fails after a change to a name, a table schema or a TTL collection until `herald schema
    --write` is run."""
    expected = infrastructure.render_files()
    on_disk = {path.relative_to(GENERATED): path.read_text()
               for path in GENERATED.rglob("*.json")}
    assert on_disk == expected, "terraform/generated/ is stale: run `herald schema --write`"


def test_generated_names_are_the_settings_defaults() -> None:
    settings = Settings.from_env({})
    generated = names()
    assert set(generated["pubsub"]["topics"].values()) == {
        settings.requests_topic, settings.callbacks_topic, settings.dead_letter_topic}
    assert {s["name"] for s in generated["pubsub"]["subscriptions"].values()} == {
        settings.requests_subscription, settings.audit_subscription,
        settings.callbacks_subscription, settings.dead_letter_topic + dead_letters.HOLD_SUFFIX}
    assert generated["bigquery"]["dataset"] == settings.dataset
    assert generated["firestore"]["state_database"] == settings.state_database
    events_table = generated["bigquery"]["tables"][events.EVENTS_TABLE]
    assert (events_table["partition_field"], events_table["clustering"]) == (
        "event_ts", ["channel", "status"])


def test_bigquery_schema_files_are_bigquery_json_schemas() -> None:
    """What google-cloud-bigquery reads from a JSON schema file is the code's schema."""
    from google.cloud import bigquery

    client = bigquery.Client(project="p", credentials=AnonymousCredentials())
    for table, schema in ((events.EVENTS_TABLE, events.bigquery_schema()),
                          (dead_letters.DEAD_LETTERS_TABLE, dead_letters.bigquery_schema())):
        assert client.schema_from_json(GENERATED / "bigquery" / f"{table}.json") == schema


def test_every_variable_the_function_gets_is_read_by_settings() -> None:
    """The function's environment (generated, explicit in main.tf, and from secrets) only holds
    variables `Settings.from_env` reads: a renamed variable would silently fall back to a default."""
    functions = root_module("functions")["functions"]
    explicit = re.findall(r"\b([A-Z][A-Z0-9_]+)\s*=", functions)
    generated = names()
    variables = {*explicit, *generated["function"]["environment"], *generated["secrets"]}
    assert {"HERALD_PROJECT", "HERALD_CALLBACK_BASE_URL"} <= set(explicit)
    samples = {"HERALD_API_KEYS": "key:client"}
    default = Settings.from_env({})
    for variable in sorted(variables):
        assert Settings.from_env({variable: samples.get(variable, "probe")}) != default, variable
    for variable, field in infrastructure.RESOURCE_VARIABLES.items():
        assert getattr(Settings.from_env({variable: "probe"}), field) == "probe", variable


def test_the_outbox_index_is_the_one_the_replay_query_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The emulator serves any query without an index, production does not: the composite index
    terraform creates is read off the query `Outbox.replay` sends (equality filters, then orders)."""
    sent: list[Query] = []

    def stream(query: Query, **_: Any) -> Iterator[Any]:
        sent.append(query)
        return iter(())

    monkeypatch.setattr(Query, "stream", stream)
    client = firestore.Client(project="p", credentials=AnonymousCredentials())
    Outbox(client).replay(publisher=None, publish_timeout_s=1.0)
    [query] = sent
    proto = query._to_protobuf()
    equalities = [proto.where.field_filter.field.field_path]
    orders = [order.field.field_path for order in proto.order_by]
    assert names()["firestore"]["indexes"] == [{
        "collection": proto.from_[0].collection_id,
        "fields": [{"field_path": field, "order": "ASCENDING"} for field in equalities + orders]}]


# --- the HCL -----------------------------------------------------------------------------------

def test_terraform_fmt() -> None:
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("terraform is not installed (CI's image has 1.11.4 at /usr/local/bin)")
    # No CLI configuration: the environment may point TF_CLI_CONFIG_FILE at a missing file.
    result = subprocess.run([terraform, "fmt", "-check", "-recursive", str(TERRAFORM)],
                            env={**os.environ, "TF_CLI_CONFIG_FILE": "/dev/null"},
                            capture_output=True, text=True)
    assert result.returncode == 0, f"run `terraform fmt -recursive terraform`:\n{result.stdout}{result.stderr}"


def test_every_variable_and_output_is_typed_and_described() -> None:
    for path in tf_files():
        document = parse(path)
        for name, body in blocks(document, "variable").items():
            assert body.get("type") and body.get("description"), f"{path}: variable {name}"
        for name, body in blocks(document, "output").items():
            assert body.get("description"), f"{path}: output {name}"


def test_providers_and_terraform_are_pinned() -> None:
    for path in [TERRAFORM / "versions.tf", *TERRAFORM.glob("modules/*/versions.tf")]:
        [settings] = parse(path)["terraform"]
        assert settings["required_version"], path
        providers = {name: body for block in settings["required_providers"]
                     for name, body in block.items() if not name.startswith("__")}
        assert providers, path
        for name, body in providers.items():
            assert body["source"] == f"hashicorp/{name}" and re.search(r"<\s*\d", body["version"]), path
    [root] = parse(TERRAFORM / "versions.tf")["terraform"]
    assert {"google", "google-beta"} <= set(root["required_providers"][0])


def test_the_hcl_spells_no_name_the_code_owns() -> None:
    """Names come from generated/names.json; one typed into the HCL would not follow a rename."""
    generated = names()
    owned = {*generated["pubsub"]["topics"].values(),
             *(s["name"] for s in generated["pubsub"]["subscriptions"].values()),
             generated["firestore"]["state_database"]}
    for path in tf_files():
        typed = owned.intersection(strings(parse(path)))
        assert not typed, f"{path} spells {typed}"


def module_dirs() -> list[Path]:
    return [TERRAFORM, *sorted(p for p in TERRAFORM.glob("modules/*") if p.is_dir()),
            *sorted(p for p in TERRAFORM.glob("examples/*") if p.is_dir())]


def module_blocks(directory: Path, kind: str) -> dict[str, Any]:
    return {name: body for path in sorted(directory.glob("*.tf"))
            for name, body in blocks(parse(path), kind).items()}


META_ARGUMENTS = {"source", "count", "for_each", "depends_on", "providers", "version"}


def test_module_calls_pass_exactly_the_modules_inputs() -> None:
    """What `terraform validate` would say of the wiring: no unknown argument, no required input
    missing, and every `module.X.Y` read is an output of X."""
    for directory in module_dirs():
        for name, call in module_blocks(directory, "module").items():
            called = (directory / call["source"]).resolve()
            inputs = module_blocks(called, "variable")
            arguments = {key for key in call if not key.startswith("__")} - META_ARGUMENTS
            assert arguments <= set(inputs), f"{directory}: module {name}: {arguments - set(inputs)}"
            required = {key for key, body in inputs.items() if "default" not in body}
            assert required <= arguments, f"{directory}: module {name} lacks {required - arguments}"
            outputs = set(module_blocks(called, "output"))
            texts = [text for path in directory.glob("*.tf") for text in strings(parse(path))]
            read = {match for text in texts
                    for match in re.findall(rf"module\.{name}(?:\[0\])?\.(\w+)", text)}
            assert read <= outputs, f"{directory}: module.{name}.{read - outputs}"


def test_every_input_is_declared_and_used() -> None:
    for directory in module_dirs():
        declared = set(module_blocks(directory, "variable"))
        used = {match for path in directory.glob("*.tf") for text in strings(parse(path))
                for match in re.findall(r"\bvar\.(\w+)", text)}
        assert used <= declared, f"{directory}: undeclared {used - declared}"
        assert declared <= used, f"{directory}: unused {declared - used}"


def iterated(for_each: str | dict | None) -> str | None:
    """The map a for_each iterates over: `{for k, v in MAP : k => v if ...}` keeps MAP's keys."""
    if not isinstance(for_each, str):
        return None if for_each is None else json.dumps(for_each, sort_keys=True)
    inner = for_each.removeprefix("${").removesuffix("}")
    kept = re.fullmatch(r"\{for (\w+), \w+ in (\S+) : \1 => .*\}", inner)
    return kept.group(2) if kept else inner


def test_each_key_indexes_a_resource_with_the_same_keys() -> None:
    """`other.name[each.key]` only exists for every key if `other` iterates over the same map (or
    this resource over a filtered copy of it)."""
    for directory in module_dirs():
        bodies = {f"{kind}.{name}": body for path in directory.glob("*.tf")
                  for block in parse(path).get("resource", []) for kind, named in block.items()
                  for name, body in named.items()}
        for address, body in bodies.items():
            for text in strings(body):
                for indexed in re.findall(r"(\w+\.\w+)\[each\.key\]", text):
                    if indexed in bodies:
                        assert iterated(bodies[indexed].get("for_each")) == \
                            iterated(body.get("for_each")), \
                            f"{directory}: {address} indexes {indexed} by each.key"


def test_every_generated_name_the_root_module_uses_exists() -> None:
    pattern = re.compile(rf"local\.(?:{'|'.join(LOCAL_ALIASES)})(?:\.[a-z_]+)+")
    references = {match for text in strings(parse(TERRAFORM / "main.tf"))
                  for match in pattern.findall(text)}
    assert "local.subscriptions.requests_pipeline.name" in references
    for reference in sorted(references):
        try:
            resolve(reference)
        except KeyError:
            pytest.fail(f"{reference} is not in generated/names.json")


def test_keys_into_the_generated_maps_exist() -> None:
    """The keys main.tf names (which topic dead-letters, who may publish where) are names.json's."""
    generated = names()
    topics, subscriptions = generated["pubsub"]["topics"], generated["pubsub"]["subscriptions"]
    pubsub = root_module("pubsub")
    assert pubsub["dead_letter_topic_key"] in topics
    assert {pubsub["hold_subscription_key"], pubsub["audit_subscription_key"]} <= set(subscriptions)
    assert subscriptions[pubsub["hold_subscription_key"]]["topic"] == pubsub["dead_letter_topic_key"]
    assert set(pubsub["publishers"]) <= set(topics)
    assert set(pubsub["subscribers"]) <= set(subscriptions)
    assert set(root_module("bigquery")["table_editors"]) <= set(generated["bigquery"]["tables"])


def test_dataflow_parameters_are_the_pipelines_options() -> None:
    parser = argparse.ArgumentParser()
    HeraldOptions._add_argparse_args(parser)
    options = {action.dest for action in parser._actions}
    settings = Settings.from_env({})
    for job in root_module("dataflow")["jobs"].values():
        assert set(job["parameters"]) <= options, job["name"]
    delivery = root_module("dataflow")["jobs"]["delivery"]["parameters"]
    assert resolve(delivery["requests_subscription"].strip("${}")) == settings.requests_subscription
    assert resolve(delivery["dataset"].strip("${}")) == settings.dataset


def test_secret_readers_are_the_service_accounts_components() -> None:
    [accounts] = parse(TERRAFORM / "modules" / "service_accounts" / "main.tf")["locals"]
    for variable, secret in names()["secrets"].items():
        assert secret["readers"] and set(secret["readers"]) <= set(accounts["accounts"]), variable


def test_no_basic_roles() -> None:
    for path in tf_files():
        for text in strings(parse(path)):
            assert text not in BASIC_ROLES, f"{path}: {text}"


def test_the_ttl_policy_is_on_the_codes_ttl_field() -> None:
    ttl = resources(parse(TERRAFORM / "modules" / "firestore" / "main.tf"), "google_firestore_field")
    assert ttl["ttl"]["field"] == infrastructure.TTL_FIELD
    assert set(names()["firestore"]["ttl"].values()) == {infrastructure.TTL_FIELD}


def test_the_outbox_alert_reads_a_line_the_function_logs() -> None:
    [variables] = [parse(TERRAFORM / "modules" / "monitoring" / "variables.tf")]
    marker = blocks(variables, "variable")["outbox_log_marker"]["default"]
    assert marker in (REPO / "ingest_function" / "main.py").read_text()


# --- checkov -----------------------------------------------------------------------------------

def checkov(directory: Path) -> dict[str, Any]:
    if not CHECKOV.exists():
        pytest.skip(f"{CHECKOV} is missing: `make test` creates it (checkov's own hcl2 fork "
                    "shadows python-hcl2, so it lives in a virtualenv of its own)")
    result = subprocess.run(
        [str(CHECKOV), "-d", str(directory), "--framework", "terraform", "--skip-download",
         "--external-checks-dir", str(TERRAFORM / "policies"), "--output", "json"],
        capture_output=True, text=True)
    report = json.loads(result.stdout)
    return (report[0] if isinstance(report, list) else report)["results"]


def test_checkov_passes_with_every_skip_explained() -> None:
    results = checkov(TERRAFORM)
    failed = [(c["check_id"], c["resource"]) for c in results["failed_checks"]]
    assert failed == []
    for check in results["skipped_checks"]:
        assert check["check_result"].get("suppress_comment"), check["check_id"]
    # checkov drops a resource it cannot evaluate without a word: Herald's own policies must
    # have seen every subscription and TTL field.
    seen = {".".join(check["resource"].split(".")[-2:])
            for kind in ("passed_checks", "skipped_checks") for check in results[kind]
            if check["check_id"].startswith("CKV2_HERALD_")}
    declared = {f"{kind}.{name}" for path in TERRAFORM.glob("modules/*/main.tf")
                for kind in ("google_pubsub_subscription", "google_firestore_field")
                for name in resources(parse(path), kind)}
    assert declared and declared <= seen


def test_herald_policies_fail_what_they_forbid(tmp_path: Path) -> None:
    (tmp_path / "main.tf").write_text("""
resource "google_pubsub_subscription" "without_dead_letters" {
  name  = "s"
  topic = "t"
}

resource "google_pubsub_subscription" "too_few_attempts" {
  name  = "s"
  topic = "t"
  dead_letter_policy {
    dead_letter_topic     = "d"
    max_delivery_attempts = 3
  }
}

resource "google_firestore_field" "other_ttl" {
  collection = "c"
  field      = "created_at"
  ttl_config {}
}
""")
    failed = {(c["check_id"], c["resource"]) for c in checkov(tmp_path)["failed_checks"]}
    assert failed == {("CKV2_HERALD_1", "google_pubsub_subscription.without_dead_letters"),
                      ("CKV2_HERALD_1", "google_pubsub_subscription.too_few_attempts"),
                      ("CKV2_HERALD_2", "google_firestore_field.other_ttl")}
