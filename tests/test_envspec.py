"""Environment spec: inference from files (unit) and the routes (HTTP, both backends)."""

from __future__ import annotations

from typing import Any

from sessiond.files.envspec import infer
from tests.support.api import Api

PYPROJECT = """
[project]
name = "x"
requires-python = ">=3.11"
dependencies = ["fastapi>=0.115", "SQLAlchemy[asyncio]>=2"]
[project.optional-dependencies]
test = ["pytest>=8"]
[tool.uv]
dev-dependencies = []
"""


DEVCONTAINER = '// c\n{"image": "mcr/x", "postCreateCommand": "make"}'


def test_python_project() -> None:
    spec, evidence = infer(
        {
            "pyproject.toml": PYPROJECT,
            "uv.lock": "",
            ".python-version": "3.12.1\n",
            "Makefile": "test:\n\tpytest\nsetup:\n\tuv sync\n",
        }
    )
    assert spec["language"] == "python" and spec["languages"] == ["python"]
    assert spec["versions"] == {"python": "3.11"}
    assert spec["packageManager"] == "uv"
    assert spec["packages"] == [
        {"name": "fastapi", "version": ">=0.115", "ecosystem": "pypi"},
        {"name": "sqlalchemy", "version": ">=2", "ecosystem": "pypi", "extras": ["asyncio"]},
        {"name": "pytest", "version": ">=8", "ecosystem": "pypi"},
    ]
    assert spec["setupCommands"] == ["uv sync", "make setup"]
    assert spec["testCommands"] == ["pytest", "make test"]
    assert evidence["versions.python"] == ["pyproject.toml"]  # the first stands
    assert evidence["packageManager"] == ["pyproject.toml", "uv.lock"]
    assert evidence["language"] == ["pyproject.toml"]


def test_requirements_only() -> None:
    spec, evidence = infer({"requirements.txt": "flask==3.0  # web\n-e .\npytest\n"})
    assert spec["language"] == "python" and spec["packageManager"] == "pip"
    assert spec["packages"] == [
        {"name": "flask", "version": "==3.0", "ecosystem": "pypi"},
        {"name": "pytest", "version": None, "ecosystem": "pypi"},
    ]
    assert spec["setupCommands"] == ["pip install -r requirements.txt"]
    assert spec["testCommands"] == ["pytest"]
    assert evidence["packages"] == ["requirements.txt"]


def test_node_typescript_with_pnpm() -> None:
    pkg = (
        '{"engines": {"node": ">=20"}, "scripts": {"test": "vitest"},'
        ' "dependencies": {"react": "18"}, "devDependencies": {"typescript": "5"}}'
    )
    spec, evidence = infer({"package.json": pkg, "pnpm-lock.yaml": "", ".nvmrc": "v20.11.0"})
    assert spec["language"] == "typescript" and spec["packageManager"] == "pnpm"
    assert spec["versions"] == {"node": "20"}
    assert spec["packages"] == [
        {"name": "react", "version": "18", "ecosystem": "npm"},
        {"name": "typescript", "version": "5", "ecosystem": "npm"},
    ]
    assert spec["setupCommands"] == ["pnpm install"] and spec["testCommands"] == ["pnpm test"]
    assert evidence["packageManager"] == ["pnpm-lock.yaml"]


def test_go_rust_ruby_docker_devcontainer_tool_versions() -> None:
    go = "module x\n\ngo 1.22\n\nrequire (\n\tgithub.com/gin-gonic/gin v1.9.1\n)\n"
    spec, _ = infer({"go.mod": go})
    assert (spec["language"], spec["versions"], spec["packages"]) == (
        "go",
        {"go": "1.22"},
        [{"name": "github.com/gin-gonic/gin", "version": "v1.9.1", "ecosystem": "go"}],
    )
    assert spec["testCommands"] == ["go test ./..."]
    cargo = '[package]\nname = "x"\nrust-version = "1.75"\n[dependencies]\nserde = "1"\n'
    spec, _ = infer({"Cargo.toml": cargo})
    assert (spec["language"], spec["versions"], spec["packages"]) == (
        "rust",
        {"rust": "1.75"},
        [{"name": "serde", "version": "1", "ecosystem": "cargo"}],
    )
    gemfile = "source 'https://rubygems.org'\nruby '3.3.0'\ngem 'rails'\ngem 'rspec'\n"
    spec, _ = infer({"Gemfile": gemfile})
    assert spec["language"] == "ruby" and spec["versions"] == {"ruby": "3.3.0"}
    assert spec["testCommands"] == ["bundle exec rspec"]
    spec, evidence = infer(
        {
            "Dockerfile": "FROM python:3.12-slim AS base\nRUN true\n",
            ".devcontainer/devcontainer.json": DEVCONTAINER,
            ".tool-versions": "nodejs 20.1.0\npython 3.11.4 # pinned\n",
        }
    )
    assert spec["baseImage"] == "python:3.12-slim"
    assert evidence["baseImage"] == ["Dockerfile"]
    assert spec["versions"] == {"node": "20.1.0", "python": "3.11.4"}
    assert spec["setupCommands"] == ["make"] and spec["language"] is None


def test_versioned_requirements_keep_name_and_range() -> None:
    """Every declaration keeps its version range (a package with one used to vanish)."""
    pyproject = '[project]\ndependencies = ["httpx>=0.27", "click"]\n'
    spec, _ = infer({"pyproject.toml": pyproject})
    assert spec["packages"] == [
        {"name": "httpx", "version": ">=0.27", "ecosystem": "pypi"},
        {"name": "click", "version": None, "ecosystem": "pypi"},
    ]
    requirements = (
        "Django>=4.2,<5  # web\n"
        "requests[socks] == 2.31 ; python_version < '3.12'\n"
        "numpy==1.26 \\\n    --hash=sha256:abc\n"
        "-r other.txt\n--index-url https://x\n"
        "git+https://github.com/a/b.git\n./local\nnot a requirement!\n"
        "Zope.Interface\n"
    )
    spec, _ = infer({"requirements.txt": requirements})
    assert spec["packages"] == [
        {"name": "django", "version": "<5,>=4.2", "ecosystem": "pypi"},
        {
            "name": "requests",
            "version": "==2.31",
            "ecosystem": "pypi",
            "extras": ["socks"],
            "markers": 'python_version < "3.12"',
        },
        {"name": "numpy", "version": "==1.26", "ecosystem": "pypi"},
        {"name": "zope-interface", "version": None, "ecosystem": "pypi"},
    ]
    pipfile = (
        '[packages]\nrequests = "*"\nflask = ">=3"\n[dev-packages]\npytest = {version = "~=8.0"}\n'
        '[requires]\npython_version = "3.12"\n'
    )
    spec, _ = infer({"Pipfile": pipfile})
    assert spec["versions"] == {"python": "3.12"}
    assert spec["packages"] == [
        {"name": "requests", "version": None, "ecosystem": "pypi"},
        {"name": "flask", "version": ">=3", "ecosystem": "pypi"},
        {"name": "pytest", "version": "~=8.0", "ecosystem": "pypi"},
    ]
    setup_cfg = "[options]\npython_requires = >=3.10\ninstall_requires =\n    attrs>=23\n    six\n"
    spec, _ = infer({"setup.cfg": setup_cfg})
    assert [(p["name"], p["version"]) for p in spec["packages"]] == [
        ("attrs", ">=23"),
        ("six", None),
    ]
    poetry = (
        '[tool.poetry.dependencies]\npython = "^3.11"\nhttpx = "^0.27"\n'
        'rich = {version = ">=13", optional = true}\n'
        '[tool.poetry.group.dev.dependencies]\npytest = "^8"\n'
    )
    spec, _ = infer({"pyproject.toml": poetry})
    assert [(p["name"], p["version"]) for p in spec["packages"]] == [
        ("httpx", "^0.27"),
        ("rich", ">=13"),
        ("pytest", "^8"),
    ]
    cargo = (
        '[dependencies]\nserde = { version = "1.0", features = ["derive"] }\n'
        'local = { path = "x" }\n'
    )
    spec, _ = infer({"Cargo.toml": cargo})
    assert spec["packages"] == [
        {"name": "serde", "version": "1.0", "ecosystem": "cargo"},
        {"name": "local", "version": None, "ecosystem": "cargo"},
    ]
    gemfile = "gem 'rails', '~> 7.1', '>= 7.1.2'\ngem \"pg\"\n"
    spec, _ = infer({"Gemfile": gemfile})
    assert spec["packages"] == [
        {"name": "rails", "version": "~> 7.1, >= 7.1.2", "ecosystem": "gem"},
        {"name": "pg", "version": None, "ecosystem": "gem"},
    ]
    go = "module x\n\nrequire golang.org/x/text v0.14.0\n"
    spec, _ = infer({"go.mod": go})
    assert spec["packages"] == [
        {"name": "golang.org/x/text", "version": "v0.14.0", "ecosystem": "go"}
    ]


def test_polyglot_and_broken_files() -> None:
    spec, _ = infer({"pyproject.toml": "not [toml", "package.json": "{oops"})
    assert spec["languages"] == ["python", "javascript"]
    assert spec["language"] == "python"
    assert infer({})[0] == {
        "language": None,
        "versions": {},
        "languages": [],
        "packages": [],
        "setupCommands": [],
        "testCommands": [],
        "packageManager": None,
    }


def test_routes(client: Any, api: Api, tenant: Any, other: Any) -> None:
    sid = api.post(
        "/v1/sessions",
        {
            "source": {
                "files": {"pyproject.toml": PYPROJECT, "uv.lock": "", "src/app.py": "print(1)\n"}
            }
        },
        expect=201,
    ).json()["session"]["id"]
    assert api.get(f"/v1/sessions/{sid}/environmentSpec").json() == {"environmentSpec": {}}
    g = api.post(f"/v1/sessions/{sid}/generateEnvironmentSpec", expect=200).json()
    assert g["environmentSpec"]["language"] == "python"
    assert g["evidence"]["packageManager"] == ["pyproject.toml", "uv.lock"]
    assert api.get(f"/v1/sessions/{sid}/environmentSpec").json() == {"environmentSpec": {}}
    r = api.put(
        f"/v1/sessions/{sid}/environmentSpec", {"environmentSpec": g["environmentSpec"]}, expect=200
    ).json()
    assert r == {"environmentSpec": g["environmentSpec"]}
    assert api.get(f"/v1/sessions/{sid}/environmentSpec").json() == r
    api.put(f"/v1/sessions/{sid}/environmentSpec", {"environmentSpec": [1]}, expect=422)
    api.put(f"/v1/sessions/{sid}/environmentSpec", {"spec": {}}, expect=422)
    Api(client, tenant.read).put(
        f"/v1/sessions/{sid}/environmentSpec", {"environmentSpec": {}}, expect=403
    )
    Api(client, tenant.read).post(f"/v1/sessions/{sid}/generateEnvironmentSpec", expect=200)
    for method, path in (("GET", "environmentSpec"), ("POST", "generateEnvironmentSpec")):
        Api(client, other.admin).request(method, f"/v1/sessions/{sid}/{path}", expect=404)
    types = [e["type"] for e in api.get(f"/v1/sessions/{sid}/events").json()["events"]]
    assert types.count("environmentSpec.updated") == 1
