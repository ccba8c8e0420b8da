"""The layers' "never" arrows (docs/architecture.md), read from the source with `ast`.

Every import counts, at the top of a module or inside a function (the lazy ones that keep
`floydtui --help` instant are still arrows). The checker is tested on a synthetic package first,
so a green run means the rules were looked for, not that the walk found nothing.
"""

from __future__ import annotations

import ast
from pathlib import Path

from helpers import REPO

PACKAGE = REPO / "floydtui"
# The layers below the TUI: they never load Textual or the TUI, not even through another module.
HEADLESS = ("floydtui.config", "floydtui.data", "floydtui.hardware", "floydtui.train", "floydtui.events")
# Everything checks.py gathers from or stands on: none of it imports the checks back.
BELOW_CHECKS = ("floydtui.errors", "floydtui.fsutil", "floydtui.paths", "floydtui.config", "floydtui.data",
                "floydtui.hardware", "floydtui.hub", "floydtui.train", "floydtui.events", "floydtui.runs",
                "floydtui.preview")
# (importers, what they never import, why): each arrow is checked on direct imports.
NEVER = [
    (HEADLESS, ("textual", "floydtui.tui"), "headless layers never load Textual or the TUI"),
    (("floydtui.tui",), ("floydtui.train",), "the TUI reaches training through `floydtui run`, never by import"),
    (BELOW_CHECKS, ("floydtui.checks",), "checks.py sits above the sections it gathers"),
]
# Checked through the package's own import graph too: a headless module that imports a floydtui
# module that imports Textual loads Textual all the same.
NEVER_REACHED = [(HEADLESS, ("textual", "floydtui.tui"))]


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every module `source` imports anywhere (functions included), relative imports resolved;
    `from a import b` counts as both `a` and `a.b` (b may be a submodule)."""
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module name -> the modules it imports, for every .py file under the package folder `root`."""
    return {module_name(p, root): imports_of(p.read_text(encoding="utf-8"), module_name(p, root),
                                             p.name == "__init__.py")
            for p in sorted(root.rglob("*.py"))}


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def violations(root: Path) -> list[str]:
    """Every broken arrow of NEVER (direct imports) and NEVER_REACHED (through the package's modules)."""
    graph = import_graph(root)
    found = []
    for importers, forbidden, why in NEVER:
        for module, imported in graph.items():
            if _under(module, importers):
                bad = {name for name in imported if _under(name, forbidden)}
                # `from a import b` gives a and a.b: name the import once, by its module
                found += [f"{module} imports {name} ({why})" for name in bad
                          if not any(name.startswith(other + ".") for other in bad)]
    for importers, forbidden in NEVER_REACHED:
        for module in graph:
            if not _under(module, importers):
                continue
            path, seen, todo = {module: module}, {module}, [module]
            while todo:  # breadth first: the shortest chain is the one reported
                current = todo.pop(0)
                for name in sorted(graph.get(current, ())):
                    if _under(name, forbidden):
                        if current != module:  # a direct import is NEVER's to report
                            found.append(f"{module} reaches {name} through {path[current]}")
                        continue
                    if name in graph and name not in seen:
                        seen.add(name)
                        path[name] = f"{path[current]} -> {name}"
                        todo.append(name)
    return sorted(set(found))


def test_the_package_keeps_every_never_arrow():
    assert PACKAGE.is_dir() and len(import_graph(PACKAGE)) > 50, "the walk must see the whole package"
    assert violations(PACKAGE) == []


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / "floydtui" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for folder in (root / "floydtui").rglob("*"):
        if folder.is_dir() and not (folder / "__init__.py").exists():
            (folder / "__init__.py").write_text("")
    (root / "floydtui" / "__init__.py").touch()
    return root / "floydtui"


def test_the_checker_finds_lazy_relative_and_indirect_imports(tmp_path):
    package = _write(tmp_path, {
        "data/clean.py": "import json\nfrom floydtui.errors import Problem\n",
        "data/lazy.py": "def show():\n    from textual.app import App\n    return App\n",
        "hardware/relative.py": "from ..tui import app\n",
        "config/indirect.py": "from floydtui.helper import thing\n",
        "helper.py": "def thing():\n    import textual.widgets\n",
        "tui/app.py": "import textual\n\ndef launch():\n    from floydtui.train import trainer\n",
        "hub/plan.py": "from floydtui import checks\n",
        "checks.py": "from floydtui.hub import plan\n",
        "errors.py": "",
    })
    assert violations(package) == sorted([
        "floydtui.data.lazy imports textual.app (headless layers never load Textual or the TUI)",
        "floydtui.hardware.relative imports floydtui.tui (headless layers never load Textual or the TUI)",
        "floydtui.tui.app imports floydtui.train (the TUI reaches training through `floydtui run`, never by import)",
        "floydtui.hub.plan imports floydtui.checks (checks.py sits above the sections it gathers)",
        "floydtui.config.indirect reaches textual.widgets through floydtui.config.indirect -> floydtui.helper",
    ])
