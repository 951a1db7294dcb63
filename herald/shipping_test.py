"""Only runtime code ships: the sdist Dataflow installs, the function's source, and their imports."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

import pytest

from herald import shipping
from herald.shipping import ROOT

DEVELOPMENT_EXAMPLES = ("herald.local.stack", "herald.sandbox.server", "herald.bench.runner",
                        "herald.demo", "herald.report", "herald.workload", "herald.analytics",
                        "herald.dbt_project", "herald.cli", "pipelines.send_test")
"""Modules that must never ship (a sample of each kind of development tooling, and a test)."""


def test_setup_py_names_runtime_and_development_modules_apart() -> None:
    modules = shipping.source_modules()
    runtime = shipping.runtime_modules()
    assert {"herald.contracts", "herald.providers.fcm", "pipelines.herald_pipeline",
            "ingest_function.main"} <= runtime.keys()
    assert set(DEVELOPMENT_EXAMPLES) <= modules.keys() - runtime.keys()


def test_no_runtime_module_imports_a_development_module() -> None:
    modules = shipping.source_modules()
    runtime = shipping.runtime_modules()
    strays = {name: sorted(shipping.local_imports(name, path, modules) - runtime.keys())
              for name, path in runtime.items()}
    assert {name: found for name, found in strays.items() if found} == {}


def test_the_import_walk_sees_development_imports() -> None:
    """The check above can fail: the CLI (development) imports the local stack."""
    modules = shipping.source_modules()
    assert "herald.local.processes" in shipping.local_imports("herald.cli", modules["herald.cli"],
                                                              modules)


def test_runtime_modules_import_only_declared_dependencies() -> None:
    """pyproject's `dependencies` (not its extras) install everything the runtime modules import."""
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert shipping.undeclared_imports(shipping.runtime_modules(), dependencies) == {}
    modules = shipping.source_modules()
    assert "herald.analytics" in shipping.undeclared_imports(  # pandas, matplotlib: extras only
        {"herald.analytics": modules["herald.analytics"]}, dependencies)


def _shipped_python(names: list[str]) -> set[str]:
    return {name for name in names if name.endswith(".py")}


def test_the_sdist_holds_the_runtime_modules_and_nothing_else(tmp_path: Path) -> None:
    """The sdist Dataflow's `--setup_file` builds and installs on every worker (the same command
    Beam's stager runs when `build` is not installed)."""
    subprocess.run([sys.executable, "setup.py", "-q", "sdist", "--dist-dir", str(tmp_path)],
                   cwd=ROOT, check=True, capture_output=True)
    (archive,) = tmp_path.glob("herald-*.tar.gz")
    with tarfile.open(archive) as sdist:
        top = sdist.getnames()[0].split("/")[0]
        shipped = {name.removeprefix(f"{top}/") for name in _shipped_python(sdist.getnames())}
    expected = {str(path.relative_to(ROOT)) for path in shipping.runtime_modules().values()}
    assert shipped == expected | {"setup.py"}


@pytest.fixture(scope="module")
def function_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shipping.build_function(tmp_path_factory.mktemp("function") / "source")


def test_the_function_source_is_main_requirements_and_what_main_imports(
        function_source: Path) -> None:
    files = {str(path.relative_to(function_source)) for path in function_source.rglob("*")
             if path.is_file()}
    assert (function_source / "main.py").read_text() == (
        ROOT / "ingest_function" / "main.py").read_text()
    assert (function_source / "requirements.txt").read_text() == (
        ROOT / "ingest_function" / "requirements.txt").read_text()
    modules = {shipping.module_name(function_source / name, function_source)
               for name in files if name.endswith(".py") and "/" in name}
    assert {"herald.contracts", "herald.settings", "ingest_function.outbox"} <= modules
    assert all(shipping.spec().is_runtime(name) for name in modules)
    assert "pipelines.herald_pipeline" not in modules  # runtime, but main.py does not need it
    assert "ingest_function.main" not in modules  # it is main.py


def test_the_function_requirements_install_what_its_source_imports(function_source: Path) -> None:
    modules = {shipping.module_name(path, function_source): path
               for path in function_source.rglob("*.py")}
    requirements = shipping.requirement_lines(function_source / "requirements.txt")
    assert shipping.undeclared_imports(modules, requirements) == {}


def test_the_cli_writes_the_function_source(tmp_path: Path) -> None:
    from herald.cli import main

    main(["package", "function", "--out", str(tmp_path / "function")])
    assert (tmp_path / "function" / "main.py").exists()
    assert not (tmp_path / "function" / "herald" / "local").exists()
