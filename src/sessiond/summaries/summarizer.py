"""The summarizer interface and the default, deterministic summarizer.

A summarizer turns a ``SummaryInput`` (gathered from the database in one read) into a
``Summary``. It runs outside any transaction, so a model-backed summarizer may take
seconds without holding the database: implement ``Summarizer.summarize`` and pass it to
``create_app(..., summarizer=...)``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

from sessiond.settings import Settings


@dataclass(frozen=True)
class ToolUse:
    name: str
    outcome: str  # "ok" | "error" | "pending"


@dataclass(frozen=True)
class SummaryInput:
    session_id: str
    title: str | None
    asked: list[str]  # the first user messages' text, oldest first
    tools: list[ToolUse]  # tool calls seen, oldest first
    tasks: list[dict[str, Any]]  # the task list, in order ({content, status, ...})
    last_assistant: str | None  # the text of the last assistant message
    message_count: int
    files: list[str] = field(default_factory=list)  # changed paths (working tree vs base)
    additions: int = 0
    deletions: int = 0
    truncated: bool = False  # the history was longer than what was scanned


@dataclass(frozen=True)
class Summary:
    text: str
    files: list[str]
    additions: int
    deletions: int
    # Who wrote it ("builtin", or the model's id), and why a model's summary was not used.
    by: str = "builtin"
    fallback_reason: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "files": self.files,
            "additions": self.additions,
            "deletions": self.deletions,
            "by": self.by,
            "fallbackReason": self.fallback_reason,
        }


class Summarizer(Protocol):
    def summarize(self, data: SummaryInput) -> Summary: ...


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: max(limit - 1, 0)].rstrip() + "…"


class DefaultSummarizer:
    """No model: what was asked, what was done, where it ended — trimmed to ``max_chars``."""

    def __init__(self, max_chars: int = 2000) -> None:
        self.max_chars = max_chars

    def summarize(self, data: SummaryInput) -> Summary:
        lines: list[str] = []
        if data.title:
            lines.append(f"Session: {_clip(data.title, 200)}")
        if data.asked:
            lines.append("Asked: " + " | ".join(_clip(a, 300) for a in data.asked))
        if data.tools:
            lines.append("Done: " + self._tools(data.tools, data.truncated))
        if data.tasks:
            lines.append("Tasks: " + self._tasks(data.tasks))
        if data.files or data.additions or data.deletions:
            shown = ", ".join(data.files[:10]) + (" …" if len(data.files) > 10 else "")
            lines.append(
                f"Files: {len(data.files)} changed (+{data.additions} -{data.deletions})"
                + (f": {shown}" if shown else "")
            )
        if data.last_assistant:
            lines.append("Ended: " + _clip(data.last_assistant, 600))
        if not lines or (len(lines) == 1 and data.title):
            lines.append(f"{data.message_count} messages; nothing else to report.")
        text = "\n".join(lines)
        if len(text) > self.max_chars:
            text = text[: max(self.max_chars - 1, 0)].rstrip() + "…"
        return Summary(text, list(data.files), data.additions, data.deletions)

    @staticmethod
    def _tools(tools: list[ToolUse], truncated: bool) -> str:
        by_name: dict[str, Counter[str]] = {}
        for use in tools:
            by_name.setdefault(use.name, Counter())[use.outcome] += 1
        parts = []
        for name, outcomes in sorted(by_name.items(), key=lambda kv: -sum(kv[1].values())):
            total = sum(outcomes.values())
            detail = ", ".join(f"{n} {k}" for k, n in sorted(outcomes.items()))
            parts.append(f"{name} x{total} ({detail})")
        head = f"{len(tools)} tool call{'s' if len(tools) != 1 else ''}"
        if truncated:
            head += " in the scanned part of the history"
        return head + ": " + "; ".join(parts)

    @staticmethod
    def _tasks(tasks: list[dict[str, Any]]) -> str:
        counts = Counter(t["status"] for t in tasks)
        done = counts.get("completed", 0)
        out = f"{done}/{len(tasks)} completed"
        for status in ("in_progress", "pending", "cancelled"):
            items = [t["content"] for t in tasks if t["status"] == status]
            if items:
                listed = "; ".join(_clip(c, 80) for c in items[:5])
                more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
                out += f"; {status.replace('_', ' ')}: {listed}{more}"
        return out


def make_summarizer(settings: Settings) -> Summarizer:
    """The configured summarizer: the builtin one, or a model behind ``openai:<url>``."""
    if settings.summarizer == "builtin":
        return DefaultSummarizer(settings.summary_chars)
    from sessiond.summaries.model import ModelSummarizer

    return ModelSummarizer(
        settings.summarizer.removeprefix("openai:"),
        settings.summary_model,
        api_key=settings.model_api_key,
        timeout=settings.model_timeout_seconds,
        max_chars=settings.summary_chars,
    )
