"""Response shapes of commits, merges and the environment spec, for OpenAPI (routes
render JSON directly; the suite checks every answer against these)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel


class AuthorOut(BaseModel):
    name: str
    email: str


class CommitOut(BaseModel):
    id: str  # the git commit sha
    message: str
    tree: str
    parents: list[str]
    author: AuthorOut
    createdAt: str


class PushOut(BaseModel):
    branch: str
    commit: str
    remote: str


class CommitEnvelope(BaseModel):
    commit: CommitOut
    push: PushOut | None = None  # with ``push: true``


class PushEnvelope(BaseModel):
    push: PushOut


class CommitList(BaseModel):
    commits: list[CommitOut]
    nextCursor: str | None


class SummaryText(BaseModel):
    title: str
    body: str


class CommitSummary(BaseModel):
    """A proposed commit message for the changes since the last commit."""

    summary: SummaryText
    files: int
    additions: int
    deletions: int


class EnvironmentSpecEnvelope(BaseModel):
    environmentSpec: dict[str, Any]  # any JSON object a client stored


class PackageOut(BaseModel):
    name: str
    version: str | None  # the declared range as written, or None
    ecosystem: str  # pypi | npm | cargo | go | gem
    extras: list[str] | None = None  # pypi only, when the requirement names extras
    markers: str | None = None  # pypi only, when the requirement has environment markers


class InferredSpec(BaseModel):
    language: str | None
    languages: list[str]
    versions: dict[str, str]
    packages: list[PackageOut]
    packageManager: str | None
    setupCommands: list[str]
    testCommands: list[str]
    baseImage: str | None = None


class GeneratedSpec(BaseModel):
    environmentSpec: InferredSpec
    evidence: dict[str, list[str]]  # field → the files it was inferred from


class ConflictOut(BaseModel):
    path: str
    kind: Literal["content", "add/add", "delete/modify", "binary"]


class MergeResult(BaseModel):
    status: Literal["merged", "up_to_date", "conflicts"]
    commit: CommitOut | None
    conflicts: list[ConflictOut]
    files: list[str]


class MergeEnvelope(BaseModel):
    merge: MergeResult
