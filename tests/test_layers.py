"""The architecture holds (docs/architecture.md): layers, no cycles, every public module importable first."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import amser_dsp

PACKAGE = Path(amser_dsp.__file__).parent

#: Bottom to top.  A module may import modules of its own layer or below, never above.
LAYERS: list[tuple[str, ...]] = [
    ("amser_dsp.errors", "amser_dsp.extras"),
    ("amser_dsp.filterbank", "amser_dsp.config", "amser_dsp.data"),
    ("amser_dsp.frontend",),
    ("amser_dsp.backends",),
    ("amser_dsp.container",),
    ("amser_dsp.codec", "amser_dsp.io"),
    ("amser_dsp.api",),
    ("amser_dsp",),  # the package root re-exports the core
    ("amser_dsp.cli", "amser_dsp.__main__"),
    # The optional extras, on top: the device-side pieces, then the server's subpackages by job.
    ("amser_dsp.client", "amser_dsp.numcodecs", "amser_dsp.zarrstore", "amser_dsp.web", "amser_dsp.server"),
    ("amser_dsp.server.recognition",),
    ("amser_dsp.server.evaluation",),
    ("amser_dsp.server.emotion",),
    ("amser_dsp.server.analysis",),
    ("amser_dsp.server.http",),
    ("amser_dsp.server.commands", "amser_dsp.batch", "amser_dsp.demo"),
]
#: The first layer of the optional extras: nothing below it may import any of them.
OPTIONAL_START = 9
#: The optional modules nothing in the core may import.
TOP = tuple(name for names in LAYERS[OPTIONAL_START:] for name in names)
#: Third-party modules of the extras: a module that needs one is skipped, with the reason, when it is missing.
OPTIONAL_MODULES = {"numba", "llvmlite", "fastapi", "uvicorn", "ctranslate2", "tokenizers", "httpx", "torch"}


def _layer(module: str) -> int:
    best, index = -1, -1
    for i, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best:
                best, index = len(name), i
    if index < 0:
        raise AssertionError(f"{module} is in no layer: add it to tests/test_layers.py and docs/architecture.md")
    return index


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imports(module: str, path: Path) -> list[tuple[str, bool]]:
    """(imported amser_dsp module, at module level?) for every import in the file, nested ones included."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    top_level = {id(n) for n in tree.body} | {
        id(n) for stmt in tree.body if isinstance(stmt, ast.If | ast.Try) for n in ast.walk(stmt)
    }
    # Imports under ``if __name__ == "__main__":`` run only when the module is the script (``python -m``), as a
    # module of its own: no module that imports this one imports them.
    script_only = {
        id(n)
        for stmt in tree.body
        if isinstance(stmt, ast.If) and ast.unparse(stmt.test).replace("'", '"') == '__name__ == "__main__"'
        for n in ast.walk(stmt)
    }
    found = []
    for node in ast.walk(tree):
        if id(node) in script_only:
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join([*base, node.module] if node.module else base)
            else:
                prefix = node.module or ""
            # "from . import x" may import submodule x; "from .m import f" imports m.
            names = [f"{prefix}.{a.name}" for a in node.names] if not node.module else [prefix]
        else:
            continue
        for name in names:
            if name.split(".")[0] == "amser_dsp":
                in_checking = isinstance(node, ast.ImportFrom) and _under_type_checking(tree, node)
                if not in_checking:
                    found.append((name, id(node) in top_level))
    return found


def _under_type_checking(tree: ast.Module, target: ast.AST) -> bool:
    return any(
        isinstance(node, ast.If)
        and getattr(node.test, "id", None) == "TYPE_CHECKING"
        and any(child is target for child in ast.walk(node))
        for node in ast.walk(tree)
    )


def _resolve(name: str, modules: dict[str, Path]) -> str:
    # "amser_dsp.codec.make_codec" names an attribute of the module amser_dsp.codec.
    while name not in modules and "." in name:
        name = name.rpartition(".")[0]
    return name


def test_every_import_goes_down_the_layers() -> None:
    modules = _modules()
    wrong = []
    for module, path in modules.items():
        for imported, _ in _imports(module, path):
            target = _resolve(imported, modules)
            if target == module:
                continue
            if _layer(target) > _layer(module):
                wrong.append(f"{module} (layer {_layer(module)}) imports {target} (layer {_layer(target)})")
    assert not wrong, "\n".join(wrong)


def test_the_core_never_imports_the_top_layer() -> None:
    modules = _modules()
    for module, path in modules.items():
        if _layer(module) >= OPTIONAL_START:
            continue
        for imported, _ in _imports(module, path):
            assert not any(imported == t or imported.startswith(t + ".") for t in TOP), f"{module} imports {imported}"


def test_no_import_cycles() -> None:
    # Imports inside functions count too: a cycle hidden in a function is still two modules that need each other.
    modules = _modules()
    graph = {m: {_resolve(i, modules) for i, _ in _imports(m, p)} - {m} for m, p in modules.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*stack[stack.index(nxt) :], nxt]))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def _public_modules() -> list[str]:
    out = []
    for module in _modules():
        if any(part.startswith("_") and part != "__main__" for part in module.split(".")[1:]):
            continue  # private helpers (imported through their public module)
        if module.endswith("__main__"):
            continue
        out.append(module)
    return out


@pytest.mark.parametrize("module", _public_modules())
def test_every_public_module_imports_first_in_a_fresh_process(module: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(PACKAGE.parent)}
    out = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, env=env)
    last = out.stderr.strip().splitlines()[-1] if out.returncode else ""
    missing = last.removeprefix("ModuleNotFoundError: No module named ").strip("'").split(".")[0]
    if ("ImportError" in last and "pip install 'amser-dsp[" in last) or missing in OPTIONAL_MODULES:
        pytest.skip(f"{module} needs an extra that is not installed: {last}")
    assert out.returncode == 0, out.stderr[-2000:]


def test_every_module_is_named_in_the_architecture_page() -> None:
    page = (PACKAGE.parents[1] / "docs" / "architecture.md").read_text(encoding="utf-8")
    missing = [
        path.relative_to(PACKAGE).as_posix()
        for path in sorted(PACKAGE.rglob("*.py"))
        if f"`{path.relative_to(PACKAGE).as_posix()}`" not in page
    ]
    assert not missing, f"not in docs/architecture.md: {missing}"


def test_no_internal_issue_numbers_in_code_or_docs() -> None:
    # A reader of the project has no tracker to look them up in: say why, in the project's own terms.
    root = PACKAGE.parents[1]
    pattern = re.compile(r"\bissues? #?[0-9]+", re.IGNORECASE)
    found = [
        f"{path.relative_to(root)}:{n}"
        for top in ("src", "docs", "tests", "benchmarks")
        for path in sorted((root / top).rglob("*"))
        if path.suffix in {".py", ".md", ".js", ".html", ".sh"} and "data" not in path.relative_to(root).parts[1:2]
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
        if pattern.search(line)
    ]
    assert not found, found
