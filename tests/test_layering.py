"""The products' dependency graph: each product imports only the products `ALLOWED` names (no cycles; `generation`
and `lovr_metric` share model loading through `lovr_common`), and none imports the stand-ins (or the tests): a
stand-in can only reach a user through a path the user gave, and is then recognised by its marker file
(`lovr_common.provenance`). `lovr_cli` (the `lovr` command) sits on top: it may import every product, and no product
imports it."""

import ast
import graphlib
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PRODUCTS = ("generation", "lovr_cli", "lovr_common", "lovr_dataset", "lovr_metric", "model_cards")
FORBIDDEN = ("lovr_standins", "tests")
# product -> the other products it may import (function-level imports included)
ALLOWED = {
    "lovr_common": set(),
    "generation": {"lovr_common"},
    "lovr_metric": {"lovr_common"},
    "model_cards": {"lovr_common", "lovr_metric"},
    "lovr_dataset": {"lovr_common", "model_cards"},  # export writes the dataset card
    "lovr_cli": {"generation", "lovr_common", "lovr_dataset", "lovr_metric", "model_cards"},  # by module name too
}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import statement in `path`, at any depth (function-level imports included)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def test_the_scan_sees_nested_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from lovr_standins.videos import sample_video\n    import tests.conftest\n")
    assert imported_modules(module) == [(2, "lovr_standins.videos"), (3, "tests.conftest")]


@pytest.mark.parametrize("package", PRODUCTS)
def test_products_do_not_import_stand_ins(package):
    sources = sorted((REPO_ROOT / package).rglob("*.py"))
    assert sources, f"no Python files under {package}/"
    offending = [
        f"{path.relative_to(REPO_ROOT)}:{line}: imports {module}"
        for path in sources
        for line, module in imported_modules(path)
        if module.split(".")[0] in FORBIDDEN
    ]
    assert offending == []


@pytest.mark.parametrize("package", PRODUCTS)
def test_products_import_only_the_products_they_build_on(package):
    imported = {
        f"{path.relative_to(REPO_ROOT)}:{line}: imports {module}"
        for path in sorted((REPO_ROOT / package).rglob("*.py"))
        for line, module in imported_modules(path)
        if module.split(".")[0] in set(PRODUCTS) - {package} - ALLOWED[package]
    }
    assert imported == set()


def test_the_allowed_graph_has_no_cycle():
    order = list(graphlib.TopologicalSorter(ALLOWED).static_order())  # raises CycleError on a cycle
    assert sorted(order) == sorted(PRODUCTS)


def test_lovr_cli_runs_modules_of_the_products_only():
    # lovr_cli imports its commands' modules by name (importlib), which the scan of import statements does not see.
    from lovr_cli import COMMANDS, GENERATE_STAGES

    modules = {command.module for command in [*COMMANDS.values(), *GENERATE_STAGES.values()] if command}
    assert {module.split(".")[0] for module in modules} <= ALLOWED["lovr_cli"]
