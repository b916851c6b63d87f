"""The package layout is the pipeline: no module imports from a later stage."""

from __future__ import annotations

import ast
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
            if isinstance(node, ast.ImportFrom) and node.module:
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
