"""A summarizer backed by an OpenAI-compatible chat completions endpoint.

The model is given what the builtin summarizer would say plus the first questions and
the last answer, and asked for a short summary. Anything going wrong — the endpoint
down, a non-2xx answer, a timeout, an empty or malformed answer — gives the builtin
summary instead, with ``fallbackReason`` saying what happened. Files and line counts
always come from the workspace, never from the model.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import httpx

from sessiond.modelapi import auth_headers, endpoint
from sessiond.summaries.summarizer import DefaultSummarizer, Summary, SummaryInput

log = logging.getLogger("sessiond.summaries")

PROMPT = (
    "You summarize a finished working session between a user and an AI agent so that a "
    "later session can find and reuse what was learned. Write at most 8 short lines: the "
    "goal, what was done and decided, what is left, the files that matter. Plain text."
)


class ModelSummarizer:
    def __init__(
        self,
        base: str,
        model: str,
        *,
        api_key: str | None,
        timeout: float,
        max_chars: int,
    ) -> None:
        self.url = endpoint(base, "chat/completions")
        self.model = model
        self.by = f"openai:{base.rstrip('/')}#{model}"
        self.fallback = DefaultSummarizer(max_chars)
        self.max_chars = max_chars
        self.timeout = timeout
        self.headers = auth_headers(api_key)

    def summarize(self, data: SummaryInput) -> Summary:
        builtin = self.fallback.summarize(data)
        try:
            text = self._ask(data, builtin.text)
        except (httpx.HTTPError, ValueError, KeyError, TypeError, IndexError) as e:
            reason = f"{e.__class__.__name__}: {e}"[:500]
            log.warning(
                "summary of %s by %s failed (%s): builtin", data.session_id, self.by, reason
            )
            return replace(builtin, fallback_reason=reason)
        return replace(builtin, text=text[: self.max_chars], by=self.by)

    def _ask(self, data: SummaryInput, facts: str) -> str:
        user = [f"Facts gathered from the session:\n{facts}"]
        if data.asked:
            user.append("The user asked:\n" + "\n".join(f"- {a[:1000]}" for a in data.asked))
        if data.last_assistant:
            user.append(f"The agent's last answer:\n{data.last_assistant[:4000]}")
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [
                {"role": "system", "content": PROMPT},
                {"role": "user", "content": "\n\n".join(user)},
            ],
            "stream": False,
        }
        # A client per summary (one per closed session): nothing to close at shutdown.
        with httpx.Client(timeout=self.timeout, headers=self.headers) as client:
            r = client.post(self.url, json=body)
        if r.status_code // 100 != 2:
            raise ValueError(f"{self.url} answered {r.status_code}: {r.text[:200]}")
        text = r.json()["choices"][0]["message"]["content"]
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{self.url} answered an empty summary")
        return text.strip()
