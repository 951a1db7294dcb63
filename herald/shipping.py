"""What ships to production, checked and assembled: the runtime modules of setup.py, their imports,
and the Cloud Function's source directory.

- `runtime_modules()`: every module of the repository that setup.py's `is_runtime` accepts.
- `imports_of(module)`: the modules a module imports (ast, every `import` statement in it,
  function-level ones included: they run in production too).
- `undeclared_imports(modules, requirements)`: third-party imports no listed requirement (nor
  what it requires) installs, so a shipped module cannot fail to import where it is deployed.
- `build_function(out)`: the Cloud Function's source, as Cloud Functions (2nd gen, Python) wants
  it: `main.py` at the root (ingest_function/main.py, whose `@functions_framework.http` functions
  are the entry points), `requirements.txt` (ingest_function/requirements.txt), and the runtime
  modules main.py imports, directly or not, in their packages. terraform zips this directory.
  https://cloud.google.com/functions/docs/writing#directory-structure-python
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import os
import runpy
import shutil
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Callable, Iterable

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
SETUP_PY = ROOT / "setup.py"
FUNCTION_DIR = ROOT / "ingest_function"
FUNCTION_ENTRY = "ingest_function.main"
DEFAULT_FUNCTION_OUT = ROOT / "build" / "function"


@dataclass(frozen=True)
class Spec:
    """setup.py's definition of what ships."""

    source_packages: tuple[str, ...]
    is_runtime: Callable[[str], bool]


@cache
def spec() -> Spec:
    """setup.py's SOURCE_PACKAGES and is_runtime (setup.py runs `setup()` only as __main__)."""
    names = runpy.run_path(str(SETUP_PY), run_name="herald_setup")
    return Spec(tuple(names["SOURCE_PACKAGES"]), names["is_runtime"])


def module_name(path: Path, root: Path = ROOT) -> str:
    """`<root>/herald/providers/fcm.py` -> `herald.providers.fcm`; a package's `__init__.py` -> its
    name."""
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_modules() -> dict[str, Path]:
    """Every module of the repository's packages (runtime and development): name -> file.
    Folders without `__init__.py` (data such as pipelines/templates) are not packages."""
    modules: dict[str, Path] = {}
    for package in spec().source_packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            if all((folder / "__init__.py").exists()
                   for folder in path.parents if folder.is_relative_to(ROOT / package)):
                modules[module_name(path)] = path
    return modules


def runtime_modules() -> dict[str, Path]:
    """The modules that ship (setup.py's is_runtime): name -> file."""
    return {name: path for name, path in source_modules().items() if spec().is_runtime(name)}


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def imports_of(module: str, path: Path) -> set[str]:
    """Dotted names `module` imports: `import a.b` -> a.b; `from a import b` -> a.b and a (b may be
    a module or a name in a); relative imports resolved against `module`'s package."""
    package = module if _is_package(path) else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return found


def local_imports(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The repository's modules `module` imports (with the packages their import initialises)."""
    local: set[str] = set()
    for name in imports_of(module, path):
        parts = name.split(".")
        local.update(prefix for prefix in (".".join(parts[:i]) for i in range(1, len(parts) + 1))
                     if prefix in modules)
    return local


def import_closure(roots: Iterable[str], modules: dict[str, Path]) -> set[str]:
    """`roots` and every repository module they import, directly or not."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(local_imports(name, modules[name], modules))
    return seen


def requirement_closure(requirements: Iterable[str]) -> set[str]:
    """Canonical names of the distributions `requirements` (PEP 508 strings) install, with what
    they require in turn (with their extras), as the installed distributions' metadata says."""
    found: set[str] = set()
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [Requirement(line) for line in requirements]
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        key = (name, frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        found.add(name)
        try:
            requires = importlib.metadata.distribution(requirement.name).requires or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for line in requires:
            sub = Requirement(line)
            if sub.marker is None or any(sub.marker.evaluate({"extra": extra})
                                         for extra in requirement.extras or {""}):
                todo.append(sub)
    return found


@cache
def _file_owners() -> dict[str, str]:
    """Installed file (normalised absolute path) -> canonical name of its distribution."""
    return {os.path.normpath(dist.locate_file(file)): canonicalize_name(dist.metadata["Name"])
            for dist in importlib.metadata.distributions() for file in dist.files or ()}


def _owner(name: str) -> str | None:
    """The distribution that installs module `name`; None for a namespace package or a name that
    is not a module (`from a import SomeClass`)."""
    try:
        found = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if found is None or found.origin is None or not os.path.isabs(found.origin):
        return None
    return _file_owners().get(os.path.normpath(found.origin))


def undeclared_imports(modules: dict[str, Path], requirements: Iterable[str]) -> dict[str, set[str]]:
    """For each of `modules` (name -> file) that imports a third-party module that
    `requirement_closure(requirements)` does not install: module -> those imports. Standard
    library and this repository's packages are not third-party. Empty when all is declared."""
    declared = requirement_closure(requirements)
    local = spec().source_packages
    missing: dict[str, set[str]] = {}
    for module, path in modules.items():
        for name in imports_of(module, path):
            top = name.partition(".")[0]
            if top in sys.stdlib_module_names or top in local:
                continue
            owner = _owner(name)
            if owner is not None and owner not in declared:
                missing.setdefault(module, set()).add(f"{name} ({owner})")
    return missing


def requirement_lines(path: Path) -> list[str]:
    """The requirements of a pip requirements file (comments and blank lines dropped)."""
    lines = (line.partition("#")[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


class PackagingError(RuntimeError):
    """The function's source would carry a module that does not ship (see setup.py)."""


def build_function(out: Path = DEFAULT_FUNCTION_OUT) -> Path:
    """Write the Cloud Function's source directory to `out` (replacing it) and return `out`.

    Raises PackagingError if main.py reaches a development module (setup.py's is_runtime)."""
    modules = source_modules()
    needed = import_closure([FUNCTION_ENTRY], modules) - {FUNCTION_ENTRY}
    stray = sorted(name for name in needed if not spec().is_runtime(name))
    if stray:
        raise PackagingError(f"the function imports development modules: {', '.join(stray)}")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    shutil.copyfile(modules[FUNCTION_ENTRY], out / "main.py")
    shutil.copyfile(FUNCTION_DIR / "requirements.txt", out / "requirements.txt")
    for name in sorted(needed):
        target = out / modules[name].relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(modules[name], target)
    return out
