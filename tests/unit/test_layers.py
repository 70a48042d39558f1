"""The package's floors: imports run down the layers only (STYLE.md, "A layout that shows the
architecture"). Read from the source with `ast`, so a layering mistake fails here, in the unit
tier, before it can become an import cycle or a delivery side that needs the API package."""

from __future__ import annotations

import ast
from pathlib import Path

import app

APP = Path(app.__file__).parent

# The leaves everything may import: the shared vocabulary, the settings and how programs run.
BASE = frozenset({"types", "config", "runtime", "__init__", "__version__"})

# Each floor and the floors beneath it that it may import (its own floor is always allowed).
ALLOWED: dict[str, frozenset[str]] = {
    "cli": frozenset({"client", "demo", "web", "api", "engine", "evaluation", "transport", "store", "policy"}),
    # Talks to a running server over HTTP and the websocket, as any integrator's program does.
    "client": frozenset({"policy"}),
    "demo": frozenset({"api", "engine", "evaluation", "transport", "store", "policy"}),
    "web": frozenset({"api", "evaluation", "transport", "store", "policy"}),
    "api": frozenset({"evaluation", "transport", "store", "policy"}),
    "engine": frozenset({"evaluation", "transport", "store", "policy"}),
    "evaluation": frozenset({"policy"}),
    "transport": frozenset({"policy"}),
    "store": frozenset({"policy"}),
    "policy": frozenset(),
}


def floor(module: str) -> str:
    """`app.engine.producer` → `engine`; `app.types` → `types` (a base leaf)."""
    return module.split(".")[1] if module.count(".") else "__init__"


def app_imports(path: Path) -> set[str]:
    """The `app.…` modules that one source file imports, at any depth (deferred imports count)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("app."))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "app":
                found.update(f"app.{a.name}" for a in node.names)
            elif node.module.startswith("app."):
                found.add(node.module)
    return found


def module_name(path: Path) -> str:
    parts = path.relative_to(APP.parent).with_suffix("").parts
    return ".".join(parts)


def violations() -> list[str]:
    bad = []
    for path in sorted(APP.rglob("*.py")):
        importer = floor(module_name(path))
        for imported in sorted(app_imports(path)):
            target = floor(imported)
            if target in BASE or target == importer:
                continue
            if importer in BASE or target not in ALLOWED.get(importer, frozenset()):
                bad.append(f"{module_name(path)} ({importer}) imports {imported} ({target})")
    return bad


def test_every_module_sits_on_a_known_floor() -> None:
    floors = {floor(module_name(p)) for p in APP.rglob("*.py")}
    assert floors <= BASE | set(ALLOWED), floors - BASE - set(ALLOWED)


def test_imports_run_down_the_floors_only() -> None:
    assert violations() == []


def test_the_delivery_side_never_imports_the_api() -> None:
    for package in ("engine", "evaluation", "transport", "store", "policy"):
        for path in (APP / package).rglob("*.py"):
            assert not any(floor(m) in {"api", "web"} for m in app_imports(path)), path


def test_the_checker_sees_an_import_that_runs_up(tmp_path: Path) -> None:
    # given a policy module that imports the store (a floor above it)
    source = tmp_path / "bad.py"
    source.write_text("from app.store import db\nimport app.engine.runner\n")
    # then the checker reports both imports, and the floors they reach lie above policy
    assert app_imports(source) == {"app.store", "app.engine.runner"}
    assert {floor(m) for m in app_imports(source)} - ALLOWED["policy"] == {"store", "engine"}
