"""What Herald ships: the runtime modules, in one list; metadata and dependencies are in pyproject.toml.

Every build of this project (the sdist Dataflow's `--setup_file` makes and installs on each worker,
the wheel the Flex Template image installs, `herald package function` for the Cloud Function) holds
only the modules `is_runtime` accepts: contracts, events, settings, providers, dead letters,
callbacks parsing, the ops jobs (replay, reconcile), the pipelines and the function. Development
tooling (the local stack, the provider sandbox, the bench, demo, report, workload generator,
analytics and dbt helpers, the `herald` CLI) and tests stay in the repository. An editable install
(`pip install -e '.[dev]'`) maps the source folders themselves, so development imports all of it.

`herald.shipping` loads RUNTIME_MODULES and `is_runtime` from this file; its tests check that no
runtime module imports a development one and that the built sdist holds nothing else.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

SOURCE_PACKAGES = ("herald", "ingest_function", "pipelines")
"""Top-level packages of the repository (runtime and development modules alike)."""

RUNTIME_MODULES = (
    "herald",
    "herald.batch_writes",
    "herald.callback_events",
    "herald.clients",
    "herald.contracts",
    "herald.dead_letters",
    "herald.dlq",
    "herald.events",
    "herald.receipts",
    "herald.reconcile",
    "herald.settings",
    "herald.status",
    "herald.templates",
    "herald.users",
    "herald.providers",
    "herald.providers.*",
    "ingest_function",
    "ingest_function.*",
    "pipelines",
    "pipelines.*",
)
"""Dotted module names (fnmatch patterns; a package is named by its own name) that production runs."""

NOT_SHIPPED = ("*_test", "*.conftest")
"""Test modules, which live beside the modules they test."""


def is_runtime(module: str) -> bool:
    """Whether `module` (dotted name; a package by its own name, not `pkg.__init__`) ships."""
    return (any(fnmatchcase(module, pattern) for pattern in RUNTIME_MODULES)
            and not any(fnmatchcase(module, pattern) for pattern in NOT_SHIPPED))


class RuntimeBuildPy(build_py):
    """setuptools' build_py (which also lists the sdist's Python files) keeping runtime modules only."""

    def find_package_modules(self, package: str, package_dir: str) -> list[tuple[str, str, str]]:
        return [(pkg, module, path)
                for pkg, module, path in super().find_package_modules(package, package_dir)
                if is_runtime(pkg if module == "__init__" else f"{pkg}.{module}")]


def ships(path: str) -> bool:
    """Whether a file of the source tree goes into the sdist: a Python module of the source
    packages only if it is runtime; anything else as setuptools found it."""
    parts = path.replace("\\", "/").split("/")
    if parts[0] not in SOURCE_PACKAGES or not path.endswith(".py"):
        return True
    module = ".".join(parts)[:-len(".py")].removesuffix(".__init__")
    return is_runtime(module)


class RuntimeSdist(sdist):
    """setuptools' sdist keeping runtime modules only. build_py's filter is not enough on its own:
    with an editable install in the checkout, sdist also reads back the old `*.egg-info/SOURCES.txt`,
    which lists every module."""

    def make_release_tree(self, base_dir: str, files: list[str]) -> None:
        super().make_release_tree(base_dir, [path for path in files if ships(path)])


if __name__ == "__main__":
    setup(packages=[package for package in find_packages(include=[f"{name}*" for name in SOURCE_PACKAGES])
                    if is_runtime(package)],
          cmdclass={"build_py": RuntimeBuildPy, "sdist": RuntimeSdist})
