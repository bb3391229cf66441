"""The domain's folders import each other one way only, and only the web layer imports the
web framework (docs/design/layout.md).

The import graph is read from the source with ``ast``: a new module is covered the day it
is written. A planted cycle and a planted web import are caught (the tests below plant
them in a copy of the tree).
"""

from __future__ import annotations

import ast
import fnmatch
import shutil
from pathlib import Path

import pytest

import sessiond

PACKAGE = Path(sessiond.__file__).parent
WEB_FRAMEWORKS = ("fastapi", "starlette", "sse_starlette", "a2wsgi", "uvicorn")
# The web layer: route modules, the HTTP edge, app assembly, the CLI, the git HTTP adapter,
# the processes that serve the app (server/: uvicorn, the supervisor).
WEB_LAYER = ("*routes.py", "http/*", "app.py", "cli.py", "*githttp.py", "server/*")


def _is_web(rel: Path) -> bool:
    return any(fnmatch.fnmatch(rel.as_posix(), pattern) for pattern in WEB_LAYER)


def _imported(path: Path, rel: Path) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    here = ["sessiond", *rel.with_suffix("").parts]
    if here[-1] == "__init__":
        here = here[:-1]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level + (rel.name == "__init__.py")]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            out.add(module)
            out.update(f"{module}.{alias.name}" for alias in node.names)
    return out


def graph(root: Path) -> tuple[dict[str, dict[str, str]], list[str]]:
    """``({folder: {imported folder: a module that imports it}}, web leaks)`` of the
    domain: top-level parts (folders and modules) of ``root``, the web layer left out."""
    edges: dict[str, dict[str, str]] = {}
    leaks: list[str] = []
    parts = {p.name.removesuffix(".py") for p in root.iterdir() if p.name != "__pycache__"}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if "migrations" in rel.parts or _is_web(rel):
            continue
        src = rel.parts[0].removesuffix(".py")
        edges.setdefault(src, {})
        for name in _imported(path, rel):
            top = name.split(".")
            if top[0] in WEB_FRAMEWORKS:
                leaks.append(f"{rel} imports {top[0]}")
            if top[0] == "sessiond" and len(top) > 1 and top[1] in parts and top[1] != src:
                edges[src].setdefault(top[1], rel.as_posix())
    return edges, sorted(set(leaks))


def cycles(edges: dict[str, dict[str, str]]) -> list[list[str]]:
    """Strongly connected components with more than one part (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def _explain(edges: dict[str, dict[str, str]], component: list[str]) -> str:
    return "; ".join(
        f"{a}->{b} ({edges[a][b]})" for a in component for b in component if b in edges.get(a, {})
    )


def test_no_cycle_between_domain_folders() -> None:
    edges, _ = graph(PACKAGE)
    found = cycles(edges)
    assert found == [], [f"{c}: {_explain(edges, c)}" for c in found]


def test_no_web_framework_outside_the_web_layer() -> None:
    _, leaks = graph(PACKAGE)
    assert leaks == []


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    copy = tmp_path / "sessiond"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def test_a_planted_cycle_is_found(tree: Path) -> None:
    """``sessions`` is the bottom of the session-owned folders: importing ``versions``
    from it closes a circle."""
    (tree / "sessions" / "planted.py").write_text("from sessiond.versions import checkpoints\n")
    found = cycles(graph(tree)[0])
    assert any({"sessions", "versions"} <= set(c) for c in found), found


def test_a_planted_web_import_is_found(tree: Path) -> None:
    (tree / "conversation" / "planted.py").write_text("from fastapi import Request\n")
    assert graph(tree)[1] == ["conversation/planted.py imports fastapi"]
