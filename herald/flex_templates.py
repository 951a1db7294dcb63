"""Dataflow Flex Template metadata of Herald's two streaming jobs, generated from their options.

`pipelines/templates/{job}/metadata.json` is not edited by hand: `render_metadata` builds it from
`pipelines.options.HeraldOptions` (each flag of the job's argparse groups, `OPTION_GROUPS`, becomes
a parameter with the flag's help text, type and default) and from the pipeline module's docstring.
herald/flex_templates_test.py fails while a committed file and the options differ, and validates
each with the Dataflow API's own `TemplateMetadata` type; rewrite them with
`write_metadata()` (`herald schema --write`).

The metadata format: https://cloud.google.com/dataflow/docs/guides/templates/configuring-flex-templates#metadata
The image both templates run in: pipelines/templates/Dockerfile.
"""

from __future__ import annotations

import argparse
import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.options import JOBS, OPTION_GROUPS, HeraldOptions

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES_DIR = ROOT / "pipelines" / "templates"

PIPELINE_MODULES = {"delivery": "pipelines.herald_pipeline", "callbacks": "pipelines.callback_pipeline"}
"""Job -> the module the template's launcher runs (`python -m` style, see the Dockerfile)."""

_NUMBER_PATTERNS = {int: r"^[0-9]+$", float: r"^[0-9]+(\.[0-9]+)?$"}


@dataclass(frozen=True)
class FlexTemplate:
    """One job's template: its metadata file and the module the launcher runs."""

    job: str

    @property
    def module(self) -> str:
        return PIPELINE_MODULES[self.job]

    @property
    def metadata_path(self) -> Path:
        return TEMPLATES_DIR / self.job / "metadata.json"


TEMPLATES = tuple(FlexTemplate(job) for job in JOBS)


def _options_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    HeraldOptions._add_argparse_args(parser)  # the class's own flags, without Beam's
    return parser


_LABEL_WORDS = {"bigquery": "BigQuery", "ttl": "TTL", "s": "(seconds)"}


def _label(dest: str) -> str:
    """`dedupe_ttl_s` -> `Dedupe TTL (seconds)`."""
    label = " ".join(_LABEL_WORDS.get(word, word) for word in dest.split("_"))
    return label[0].upper() + label[1:]


def _parameter(action: argparse.Action) -> dict[str, Any]:
    parameter: dict[str, Any] = {
        "name": action.dest,
        "label": _label(action.dest),
        "helpText": action.help,
        "isOptional": not action.required,
    }
    if action.type in _NUMBER_PATTERNS:
        parameter["paramType"] = "NUMBER"
        parameter["regexes"] = [_NUMBER_PATTERNS[action.type]]
    else:
        parameter["paramType"] = "TEXT"
    if action.default is not None:
        parameter["defaultValue"] = str(action.default)
    return parameter


def render_metadata(template: FlexTemplate) -> str:
    """The template's metadata.json text: every HeraldOptions flag its job reads, as parameters."""
    parser = _options_parser()
    parameters = [_parameter(action)
                  for group in parser._action_groups if template.job in OPTION_GROUPS.get(group.title, ())
                  for action in group._group_actions]
    summary = (importlib.import_module(template.module).__doc__ or "").strip().splitlines()[0]
    metadata = {
        "name": f"Herald {template.job}",
        "description": summary,
        "streaming": True,
        "supportsExactlyOnce": True,
        "supportsAtLeastOnce": False,
        "parameters": parameters,
    }
    return json.dumps(metadata, indent=2) + "\n"


def write_metadata() -> list[Path]:
    """Rewrite every template's metadata.json from the options; returns the paths written."""
    for template in TEMPLATES:
        template.metadata_path.parent.mkdir(parents=True, exist_ok=True)
        template.metadata_path.write_text(render_metadata(template))
    return [template.metadata_path for template in TEMPLATES]
