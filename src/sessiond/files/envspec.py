"""Environment spec: inferred from the files at the root of a working tree.

``infer(files)`` is pure: ``files`` maps the root's well-known file names to their text.
It returns the spec and, for each field, the files it came from (``evidence``).
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable
from typing import Any

from sessiond.files import packages

KNOWN = (
    "pyproject.toml",
    "setup.cfg",
    "setup.py",
    "requirements.txt",
    "requirements-dev.txt",
    "requirements_dev.txt",
    "dev-requirements.txt",
    "Pipfile",
    "uv.lock",
    "poetry.lock",
    "pdm.lock",
    ".python-version",
    "package.json",
    "package-lock.json",
    "yarn.lock",
    "pnpm-lock.yaml",
    "bun.lockb",
    "tsconfig.json",
    ".nvmrc",
    ".node-version",
    "go.mod",
    "Cargo.toml",
    "Gemfile",
    ".ruby-version",
    "Dockerfile",
    ".tool-versions",
    "Makefile",
    ".devcontainer/devcontainer.json",
)


class Spec:
    """Accumulates fields with their evidence; the first value for a field wins."""

    def __init__(self) -> None:
        self.fields: dict[str, Any] = {}
        self.evidence: dict[str, list[str]] = {}

    def set(self, field: str, value: Any, source: str) -> None:
        if value in (None, "", [], {}):
            return
        if field == "language":
            self.add("languages", [value], source)
        if field not in self.fields:
            self.fields[field] = value
        if self.fields[field] == value:  # evidence only for the value that stands
            self.cite(field, source)

    def add(self, field: str, values: list[str], source: str) -> None:
        if not values:
            return
        current = self.fields.setdefault(field, [])
        for v in values:
            if v not in current:
                current.append(v)
        self.cite(field, source)

    def packages(self, found: list[packages.Package], source: str) -> list[str]:
        """Add package entries (the first of a name in an ecosystem stands); their names."""
        if not found:
            return []
        current = self.fields.setdefault("packages", [])
        known = {(p["ecosystem"], p["name"]) for p in current}
        for package in found:
            if (package["ecosystem"], package["name"]) not in known:
                known.add((package["ecosystem"], package["name"]))
                current.append(package)
        self.cite("packages", source)
        return [p["name"] for p in found]

    def cite(self, field: str, source: str) -> None:
        paths = self.evidence.setdefault(field, [])
        if source not in paths:
            paths.append(source)


def _version(spec: str) -> str | None:
    match = re.search(r"(\d+(?:\.\d+)*)", spec or "")
    return match.group(1) if match else None


def _python(files: dict[str, str], s: Spec) -> None:
    found = False
    if "pyproject.toml" in files:
        found = True
        try:
            data = tomllib.loads(files["pyproject.toml"])
        except tomllib.TOMLDecodeError:
            data = {}
        project = data.get("project", {})
        s.set("versions.python", _version(project.get("requires-python", "")), "pyproject.toml")
        declared = packages.requirement_list(project.get("dependencies"))
        for extra in (project.get("optional-dependencies") or {}).values():
            declared += packages.requirement_list(extra)
        tool = data.get("tool", {})
        poetry = tool.get("poetry", {})
        if poetry:
            declared += packages.name_table(poetry.get("dependencies"), "pypi", ["python"])
            for group in (poetry.get("group") or {}).values():
                if isinstance(group, dict):
                    declared += packages.name_table(group.get("dependencies"), "pypi")
            s.set(
                "versions.python",
                _version(poetry.get("dependencies", {}).get("python", "")),
                "pyproject.toml",
            )
            s.set("packageManager", "poetry", "pyproject.toml")
        if "uv" in tool:
            s.set("packageManager", "uv", "pyproject.toml")
        if "pdm" in tool:
            s.set("packageManager", "pdm", "pyproject.toml")
        deps = s.packages(declared, "pyproject.toml")
        if "pytest" in deps or "pytest" in tool.get("pytest", {}) or "pytest" in tool:
            s.add("testCommands", ["pytest"], "pyproject.toml")
    for lock, manager in (("uv.lock", "uv"), ("poetry.lock", "poetry"), ("pdm.lock", "pdm")):
        if lock in files:
            found = True
            s.set("packageManager", manager, lock)
    if "Pipfile" in files:
        found = True
        s.set("packageManager", "pipenv", "Pipfile")
        try:
            pipfile = tomllib.loads(files["Pipfile"])
        except tomllib.TOMLDecodeError:
            pipfile = {}
        requires = pipfile.get("requires") or {}
        s.set("versions.python", _version(str(requires.get("python_version", ""))), "Pipfile")
        for table in ("packages", "dev-packages"):
            s.packages(packages.name_table(pipfile.get(table), "pypi"), "Pipfile")
    if "setup.cfg" in files:
        found = True
        text = files["setup.cfg"]
        s.set(
            "versions.python",
            _version((re.search(r"python_requires\s*=\s*(.+)", text) or [None, ""])[1] or ""),
            "setup.cfg",
        )
        block = re.search(r"install_requires\s*=\s*\n((?:[ \t]+.+\n?)+)", text)
        if block:
            s.packages(packages.requirements_file(block.group(1)), "setup.cfg")
    if "setup.py" in files:
        found = True
        s.cite("language", "setup.py")
    for name in (
        "requirements.txt",
        "requirements-dev.txt",
        "requirements_dev.txt",
        "dev-requirements.txt",
    ):
        if name in files:
            found = True
            names = s.packages(packages.requirements_file(files[name]), name)
            s.set("packageManager", "pip", name)
            s.add("setupCommands", [f"pip install -r {name}"], name)
            if "pytest" in names:
                s.add("testCommands", ["pytest"], name)
    if ".python-version" in files:
        found = True
        s.set("versions.python", _version(files[".python-version"]), ".python-version")
    if not found:
        return
    for source in ("pyproject.toml", "setup.cfg", "setup.py", "requirements.txt", "Pipfile"):
        if source in files:
            s.set("language", "python", source)
            break
    else:
        s.set("language", "python", ".python-version")
    py_manager = str(s.fields.get("packageManager") or "")
    if "pyproject.toml" in files or "setup.py" in files:
        setup = {
            "uv": "uv sync",
            "poetry": "poetry install",
            "pdm": "pdm install",
            "pipenv": "pipenv install --dev",
        }.get(py_manager, "pip install -e .")
        s.add(
            "setupCommands", [setup], "pyproject.toml" if "pyproject.toml" in files else "setup.py"
        )


def _node(files: dict[str, str], s: Spec) -> None:
    if "package.json" not in files:
        if ".nvmrc" in files or ".node-version" in files:
            for name in (".nvmrc", ".node-version"):
                if name in files:
                    s.set("versions.node", _version(files[name]), name)
        return
    try:
        pkg = json.loads(files["package.json"])
    except json.JSONDecodeError:
        pkg = {}
    if not isinstance(pkg, dict):
        pkg = {}
    declared = packages.name_table(pkg.get("dependencies"), "npm")
    declared += packages.name_table(pkg.get("devDependencies"), "npm")
    deps = [p["name"] for p in declared]
    typescript = "typescript" in deps or "tsconfig.json" in files
    s.set("language", "typescript" if typescript else "javascript", "package.json")
    if "tsconfig.json" in files:
        s.cite("language", "tsconfig.json")
    s.packages(declared, "package.json")
    s.set("versions.node", _version((pkg.get("engines") or {}).get("node", "")), "package.json")
    for name in (".nvmrc", ".node-version"):
        if name in files:
            s.set("versions.node", _version(files[name]), name)
    manager_field = str(pkg.get("packageManager") or "")
    node_manager = manager_field.split("@", 1)[0] if manager_field else ""
    sources = ["package.json"] if node_manager else []
    for lock, name in (
        ("pnpm-lock.yaml", "pnpm"),
        ("yarn.lock", "yarn"),
        ("bun.lockb", "bun"),
        ("package-lock.json", "npm"),
    ):
        if lock in files and (not node_manager or node_manager == name):
            node_manager = name
            sources.append(lock)
    node_manager = node_manager or "npm"
    for source in sources or ["package.json"]:
        s.set("packageManager", node_manager, source)
    install = {
        "npm": "npm ci" if "package-lock.json" in files else "npm install",
        "yarn": "yarn install",
        "pnpm": "pnpm install",
        "bun": "bun install",
    }
    s.add("setupCommands", [install.get(node_manager, f"{node_manager} install")], "package.json")
    if (pkg.get("scripts") or {}).get("test"):
        s.add("testCommands", [f"{node_manager} test"], "package.json")


def _go(files: dict[str, str], s: Spec) -> None:
    if "go.mod" not in files:
        return
    text = files["go.mod"]
    s.set("language", "go", "go.mod")
    s.set(
        "versions.go",
        _version((re.search(r"^go\s+(\S+)", text, re.M) or [None, ""])[1] or ""),
        "go.mod",
    )
    s.packages(packages.go_mod(text), "go.mod")
    s.set("packageManager", "go modules", "go.mod")
    s.add("setupCommands", ["go mod download"], "go.mod")
    s.add("testCommands", ["go test ./..."], "go.mod")


def _rust(files: dict[str, str], s: Spec) -> None:
    if "Cargo.toml" not in files:
        return
    try:
        data = tomllib.loads(files["Cargo.toml"])
    except tomllib.TOMLDecodeError:
        data = {}
    s.set("language", "rust", "Cargo.toml")
    s.set(
        "versions.rust", _version((data.get("package") or {}).get("rust-version", "")), "Cargo.toml"
    )
    declared = packages.name_table(data.get("dependencies"), "cargo")
    s.packages(declared + packages.name_table(data.get("dev-dependencies"), "cargo"), "Cargo.toml")
    s.set("packageManager", "cargo", "Cargo.toml")
    s.add("setupCommands", ["cargo build"], "Cargo.toml")
    s.add("testCommands", ["cargo test"], "Cargo.toml")


def _ruby(files: dict[str, str], s: Spec) -> None:
    if "Gemfile" not in files:
        return
    text = files["Gemfile"]
    gems = [p["name"] for p in packages.gemfile(text)]
    s.set("language", "ruby", "Gemfile")
    s.set(
        "versions.ruby",
        _version((re.search(r"""^\s*ruby\s+['"]([^'"]+)""", text, re.M) or [None, ""])[1] or ""),
        "Gemfile",
    )
    if ".ruby-version" in files:
        s.set("versions.ruby", _version(files[".ruby-version"]), ".ruby-version")
    s.packages(packages.gemfile(text), "Gemfile")
    s.set("packageManager", "bundler", "Gemfile")
    s.add("setupCommands", ["bundle install"], "Gemfile")
    s.add(
        "testCommands",
        ["bundle exec rspec" if "rspec" in gems else "bundle exec rake test"],
        "Gemfile",
    )


def _tool_versions(files: dict[str, str], s: Spec) -> None:
    if ".tool-versions" not in files:
        return
    names = {
        "nodejs": "node",
        "node": "node",
        "python": "python",
        "golang": "go",
        "go": "go",
        "rust": "rust",
        "ruby": "ruby",
    }
    for line in files[".tool-versions"].splitlines():
        parts = line.split("#", 1)[0].split()
        if len(parts) >= 2 and parts[0] in names:
            s.set(f"versions.{names[parts[0]]}", _version(parts[1]), ".tool-versions")


def _containers(files: dict[str, str], s: Spec) -> None:
    if "Dockerfile" in files:
        match = re.search(r"^\s*FROM\s+(?:--\S+\s+)*(\S+)", files["Dockerfile"], re.M | re.I)
        if match:
            s.set("baseImage", match.group(1), "Dockerfile")
    name = ".devcontainer/devcontainer.json"
    if name in files:
        text = re.sub(r"^\s*//.*$", "", files[name], flags=re.M)
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            data = {}
        if isinstance(data, dict):
            s.set("baseImage", data.get("image"), name)
            command = data.get("postCreateCommand")
            if isinstance(command, str):
                s.add("setupCommands", [command], name)


def _make(files: dict[str, str], s: Spec) -> None:
    if "Makefile" not in files:
        return
    targets = set(re.findall(r"^([A-Za-z][\w-]*)\s*:(?!=)", files["Makefile"], re.M))
    for target in ("setup", "install", "deps"):
        if target in targets:
            s.add("setupCommands", [f"make {target}"], "Makefile")
            break
    for target in ("test", "check"):
        if target in targets:
            s.add("testCommands", [f"make {target}"], "Makefile")
            break


DETECTORS: tuple[Callable[[dict[str, str], Spec], None], ...] = (
    _python,
    _node,
    _go,
    _rust,
    _ruby,
    _tool_versions,
    _containers,
    _make,
)


def infer(files: dict[str, str]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """``(spec, evidence)`` from the text of the well-known files at the root."""
    s = Spec()
    for detect in DETECTORS:
        detect(files, s)
    spec: dict[str, Any] = {}
    versions: dict[str, str] = {}
    for field, value in s.fields.items():
        if field.startswith("versions."):
            versions[field.split(".", 1)[1]] = value
        else:
            spec[field] = value
    spec.setdefault("language", None)
    spec["versions"] = versions
    for field in ("languages", "packages", "setupCommands", "testCommands"):
        spec.setdefault(field, [])
    spec.setdefault("packageManager", None)
    return spec, s.evidence
