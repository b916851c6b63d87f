"""The package layout is the pipeline: no module imports from a later stage."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import balcon

#: Stages in pipeline order; ``errors`` and the package root serve every stage.
STAGES = ("methods", "config", "presets", "data", "models", "losses", "engine", "runs",
          "report", "export", "cli_train", "cli")
SHARED = {"errors", "__init__", "__main__"}


def _stage(module: str) -> str:
    """``balcon.runs.train`` -> ``engine``; ``balcon`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_no_module_imports_from_a_later_stage():
    root = Path(balcon.__file__).parent
    wrong, checked = [], 0
    for path in root.rglob("*.py"):
        here = _stage(".".join(("balcon", *path.relative_to(root).with_suffix("").parts)))
        if here in SHARED:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "balcon":
                names = [f"balcon.{a.name}" for a in node.names if a.name in STAGES]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                if not name.startswith("balcon.") or _stage(name) in SHARED:
                    continue
                checked += 1
                if STAGES.index(_stage(name)) > STAGES.index(here):
                    wrong.append(f"{path.relative_to(root)} imports {name}")
    assert checked > 100 and not wrong, wrong


def _functions(path: Path) -> list[tuple[str, ast.FunctionDef]]:
    """Every function of ``path`` (nested ones and methods too), by name; a name may
    repeat."""
    return [(n.name, n) for n in ast.walk(ast.parse(path.read_text()))
            if isinstance(n, ast.FunctionDef)]


def test_training_reads_on_one_screen_and_knows_no_run_keeping():
    """The step and its loss on one screen; no engine function past 50 lines; the engine
    touches no run directory (balcon.runs drives it)."""
    engine = Path(balcon.__file__).parent / "engine"
    sizes = [(f"{path.stem}.{name}", f.end_lineno - f.lineno + 1, len(f.args.args))
             for path in engine.glob("*.py") for name, f in _functions(path)]
    size = {name: (lines, args) for name, lines, args in sizes}
    assert size["steps.step_loss"][0] <= 30 and size["steps.train_step"][0] <= 25
    assert size["loop.train_epoch"][0] <= 40 and size["loop.train_epoch"][1] <= 6
    assert [name for name, lines, _ in sizes if lines > 50] == []
    for path in engine.glob("*.py"):
        assert not re.search(r"^\s*(from|import) balcon\.runs", path.read_text(), re.M), path

