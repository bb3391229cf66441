"""Package declarations → ``{"name", "version", "ecosystem"}`` entries (environment spec).

``version`` is the declared range as written (``">=0.27"``, ``"^18.2"``, ``"~> 7.1"``), or
None when the declaration names no version. Python requirement strings are parsed with
``packaging`` (PEP 508: name, specifier, extras, markers); a pypi entry also carries
``extras`` and ``markers`` when the requirement has them. Names are normalized the way
each ecosystem compares them (PEP 503 for pypi). A declaration that cannot be parsed is
skipped, never guessed at.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

Package = dict[str, Any]


def entry(name: str, version: str | None, ecosystem: str) -> Package:
    return {"name": name, "version": version or None, "ecosystem": ecosystem}


def requirement(text: str) -> Package | None:
    """One PEP 508 requirement string (``"httpx[http2]>=0.27; python_version<'3.12'"``)."""
    try:
        req = Requirement(text.strip())
    except InvalidRequirement:
        return None
    found = entry(canonicalize_name(req.name), str(req.specifier) or None, "pypi")
    if req.extras:
        found["extras"] = sorted(req.extras)
    if req.marker is not None:
        found["markers"] = str(req.marker)
    return found


def requirements_file(text: str) -> list[Package]:
    """A pip requirements file: one requirement a line; options (``-r``, ``-e``,
    ``--hash``), comments, URLs and paths are not packages. ``\\`` continues a line."""
    out: list[Package] = []
    for line in text.replace("\\\n", " ").splitlines():
        line = re.split(r"(?:^|\s)#", line, maxsplit=1)[0]
        line = re.split(r"\s--?\w", line, maxsplit=1)[0].strip()
        if not line or line.startswith(("-", ".", "/")) or "://" in line.split("@")[0]:
            continue
        found = requirement(line)
        if found is not None:
            out.append(found)
    return out


def requirement_list(values: Any) -> list[Package]:
    """A TOML/INI list of requirement strings (``[project].dependencies``)."""
    if not isinstance(values, list):
        return []
    return [p for p in (requirement(v) for v in values if isinstance(v, str)) if p]


def _table_version(value: Any) -> str | None:
    """``"1.2"`` or ``{version = "1.2", ...}`` (poetry, Pipfile, Cargo); ``"*"`` is none."""
    if isinstance(value, dict):
        value = value.get("version")
    if not isinstance(value, str) or value.strip() in ("", "*"):
        return None
    return value.strip()


def name_table(table: Any, ecosystem: str, skip: Iterable[str] = ()) -> list[Package]:
    """``{name: version | {version, ...}}`` tables: poetry, Pipfile, Cargo, package.json."""
    if not isinstance(table, dict):
        return []
    skipped = set(skip)
    out = []
    for name, value in table.items():
        if not isinstance(name, str) or name in skipped:
            continue
        key = canonicalize_name(name) if ecosystem == "pypi" else name
        out.append(entry(key, _table_version(value), ecosystem))
    return out


_GO_REQUIRE = re.compile(r"^\s*(?:require\s+)?([\w./~-]+\.[\w./~-]+)\s+(v[\w.+-]+)", re.M)
_GEM = re.compile(r"""^\s*gem\s+['"]([^'"]+)['"]((?:\s*,\s*['"][^'"]*['"])*)""", re.M)


def go_mod(text: str) -> list[Package]:
    """``require`` lines of a ``go.mod`` (single or in a block): module and version."""
    return [entry(module, version, "go") for module, version in _GO_REQUIRE.findall(text)]


def gemfile(text: str) -> list[Package]:
    """``gem 'name', '~> 7.1', '>= 7.1.2'``: the version constraints joined by ``, ``."""
    out = []
    for name, rest in _GEM.findall(text):
        constraints = re.findall(r"""['"]([^'"]*)['"]""", rest)
        out.append(entry(name, ", ".join(c for c in constraints if c) or None, "gem"))
    return out
