"""An OpenAI-compatible chat-completions mock model server on loopback, for driving real agents.

Runs ``http.server.ThreadingHTTPServer`` in a background thread on 127.0.0.1 (a free port)::

    with MockModel() as model:                      # or model.start() ... model.stop()
        model.enqueue(tool_call("bash", {"command": "echo hi > made.txt",
                                         "description": "make a file"}),
                      text("Done."))
        ...  # point the agent at model.url (".../v1")
        assert model.chat_requests[1]["messages"][-1]["role"] == "tool"

Endpoints: ``GET /v1/models``, ``POST /v1/embeddings`` (see :meth:`MockModel.embed`) and
``POST /v1/chat/completions``, with ``stream: true``
(server-sent events, ``data: {...}`` chunks, then ``data: [DONE]``) or without. Each chat
request takes the next reply from the queue, or ``default`` when the queue is empty. A reply
is a :class:`Reply` (see :func:`text`, :func:`tool_call`, :func:`error`) or a callable that
takes the request body and returns one. Text streams in several chunks; tool calls stream the
way OpenAI streams them (id and name first, then the arguments in pieces). When the request
asks for usage (``stream_options.include_usage``) a final chunk carries ``usage``; a
non-stream answer always has it.

Requests that ``answer_title`` recognises (an agent's side request for a conversation title,
like opencode's title agent) get ``title`` back and do not consume the queue; they are
recorded in ``requests`` but not in ``chat_requests``.

Every request is recorded in ``requests`` (``{"method", "path", "headers", "body"}``);
``chat_requests`` holds the bodies of the chat requests that took a reply, and ``aborted``
the indexes (into ``chat_requests``) of those whose answer the client dropped midway (a
cancelled turn; noticed at the next chunk written, so give such a reply a ``delay``). Use
``wait_for_chat_requests(n)`` to wait for them.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class ToolCall:
    name: str
    arguments: dict[str, Any] | str
    id: str = field(default_factory=lambda: f"call_{uuid.uuid4().hex[:16]}")

    @property
    def arguments_json(self) -> str:
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(self.arguments)


@dataclass
class Reply:
    """One scripted answer: text, tool calls (optionally after some text), or an HTTP error."""

    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    chunks: int = 4  # how many pieces text and each tool call's arguments are streamed in
    delay: float = 0.0  # seconds to sleep before each streamed chunk (or a whole answer)
    status: int = 200  # not 200: answer with this status and an OpenAI-style error body
    finish_reason: str | None = None  # default: "tool_calls" when there are any, else "stop"


ReplySource = Reply | Callable[[dict[str, Any]], Reply]


def text(content: str, *, chunks: int = 4, delay: float = 0.0) -> Reply:
    return Reply(text=content, chunks=chunks, delay=delay)


def tool_call(
    name: str,
    arguments: dict[str, Any] | str,
    *,
    call_id: str | None = None,
    preface: str = "",
    chunks: int = 3,
    delay: float = 0.0,
) -> Reply:
    call = ToolCall(name, arguments) if call_id is None else ToolCall(name, arguments, call_id)
    return Reply(text=preface, tool_calls=[call], chunks=chunks, delay=delay)


def error(status: int, message: str = "mock error") -> Reply:
    return Reply(text=message, status=status)


def _split(s: str, n: int) -> list[str]:
    if not s:
        return []
    n = max(1, min(n, len(s)))
    size = -(-len(s) // n)
    return [s[i : i + size] for i in range(0, len(s), size)]


def _message_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def is_title_request(body: dict[str, Any]) -> bool:
    """opencode's title agent: a system prompt that starts 'You are a title generator'."""
    for message in body.get("messages", []):
        if message.get("role") == "system" and "title generator" in _message_text(message):
            return True
    return False


class MockModel:
    def __init__(
        self,
        *,
        default: ReplySource | None = None,
        models: tuple[str, ...] = ("mock-model",),
        title: str = "Test session",
        answer_title: Callable[[dict[str, Any]], bool] | None = is_title_request,
    ) -> None:
        self.default: ReplySource = default if default is not None else text("OK")
        self.models = models
        self.title = title
        self.answer_title = answer_title
        self.requests: list[dict[str, Any]] = []
        self.chat_requests: list[dict[str, Any]] = []
        self.aborted: list[int] = []  # indexes into chat_requests whose answer the client dropped
        self._queue: deque[ReplySource] = deque()
        # Embeddings: a bag of words hashed into embedding_dims buckets (``synonyms`` maps
        # a word to the one it counts as); the next ``embedding_failures`` requests get a
        # 500; each answer waits ``embedding_delay`` seconds.
        self.embedding_dims = 64
        self.synonyms: dict[str, str] = {}
        self.embedding_failures = 0
        self.embedding_delay = 0.0
        self.embedding_requests: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- script -----------------------------------------------------------------------------

    def enqueue(self, *replies: ReplySource) -> None:
        with self._cond:
            self._queue.extend(replies)

    def clear(self) -> None:
        """Drop the replies still queued."""
        with self._cond:
            self._queue.clear()

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._queue)

    def embed(self, text: str) -> list[float]:
        """The mock's embedding of ``text`` (not normalized; the server normalizes)."""
        import hashlib
        import re

        vector = [0.0] * self.embedding_dims
        for word in re.findall(r"\w+", text.lower()):
            word = self.synonyms.get(word, word)
            bucket = int.from_bytes(hashlib.sha256(word.encode()).digest()[:4], "big")
            vector[bucket % self.embedding_dims] += 1.0
        if not any(vector):
            vector[0] = 1.0
        return vector

    def wait_for_chat_requests(self, n: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.chat_requests) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(self.chat_requests)} of {n} chat requests arrived")
                self._cond.wait(left)
            return list(self.chat_requests)

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The OpenAI base URL, ``http://127.0.0.1:PORT/v1``."""
        if self._server is None:
            raise RuntimeError("mock model server is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> MockModel:
        if self._server is not None:
            return self
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name="mock-model",
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> MockModel:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- request handling (server threads) --------------------------------------------------

    def _record(self, entry: dict[str, Any]) -> None:
        with self._cond:
            self.requests.append(entry)
            self._cond.notify_all()

    def _take_reply(self, body: dict[str, Any]) -> tuple[int, Reply]:
        with self._cond:
            self.chat_requests.append(body)
            index = len(self.chat_requests) - 1
            source = self._queue.popleft() if self._queue else self.default
            self._cond.notify_all()
        return index, source(body) if callable(source) else source

    def _aborted(self, index: int) -> None:
        with self._cond:
            self.aborted.append(index)
            self._cond.notify_all()


def _handler(model: MockModel) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "mock-model/1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _read_body(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                return json.loads(raw) if raw else None
            except ValueError:
                return raw.decode("utf-8", "replace")

        def _entry(self, body: Any) -> dict[str, Any]:
            return {
                "method": self.command,
                "path": self.path,
                "headers": dict(self.headers.items()),
                "body": body,
            }

        def _send_json(self, status: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            model._record(self._entry(None))
            path = self.path.split("?", 1)[0].rstrip("/")
            if path in ("/v1/models", "/models"):
                now = int(time.time())
                data = [
                    {"id": m, "object": "model", "created": now, "owned_by": "mock"}
                    for m in model.models
                ]
                self._send_json(200, {"object": "list", "data": data})
            else:
                self._send_json(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self) -> None:
            body = self._read_body()
            model._record(self._entry(body))
            path = self.path.split("?", 1)[0].rstrip("/")
            if path in ("/v1/embeddings", "/embeddings"):
                self._embeddings(body)
                return
            if path not in ("/v1/chat/completions", "/chat/completions"):
                self._send_json(404, {"error": {"message": f"no route {self.path}"}})
                return
            if not isinstance(body, dict):
                self._send_json(400, {"error": {"message": "body is not a JSON object"}})
                return
            index = None
            if model.answer_title is not None and model.answer_title(body):
                reply = text(model.title, chunks=1)
            else:
                index, reply = model._take_reply(body)
            try:
                self._answer(body, reply)
            except (BrokenPipeError, ConnectionResetError):
                # The client went away mid-answer (a cancelled turn).
                self.close_connection = True
                if index is not None:
                    model._aborted(index)

        def _embeddings(self, body: Any) -> None:
            with model._cond:
                model.embedding_requests.append(body)
                failing = model.embedding_failures > 0
                if failing:
                    model.embedding_failures -= 1
            time.sleep(model.embedding_delay)
            if failing:
                self._send_json(500, {"error": {"message": "mock embedding failure"}})
                return
            inputs = body.get("input") if isinstance(body, dict) else None
            if isinstance(inputs, str):
                inputs = [inputs]
            if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
                self._send_json(400, {"error": {"message": "input must be strings"}})
                return
            data = [
                {"object": "embedding", "index": i, "embedding": model.embed(text)}
                for i, text in enumerate(inputs)
            ]
            self._send_json(200, {"object": "list", "data": data, "model": body.get("model")})

        def _answer(self, body: dict[str, Any], reply: Reply) -> None:
            if reply.status != 200:
                self._send_json(
                    reply.status,
                    {"error": {"message": reply.text, "type": "mock_error", "code": None}},
                )
                return
            cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
            created = int(time.time())
            name = body.get("model") or model.models[0]
            finish = reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")
            prompt_tokens = max(1, len(json.dumps(body.get("messages", []))) // 4)
            completion_tokens = max(
                1, (len(reply.text) + sum(len(c.arguments_json) for c in reply.tool_calls)) // 4
            )
            usage = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            }
            if not body.get("stream"):
                time.sleep(reply.delay)  # once: the whole answer is one chunk
                message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
                if reply.tool_calls:
                    message["tool_calls"] = [
                        {
                            "id": c.id,
                            "type": "function",
                            "function": {"name": c.name, "arguments": c.arguments_json},
                        }
                        for c in reply.tool_calls
                    ]
                self._send_json(
                    200,
                    {
                        "id": cid,
                        "object": "chat.completion",
                        "created": created,
                        "model": name,
                        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                        "usage": usage,
                    },
                )
                return

            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True

            def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
                return {
                    "id": cid,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": name,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
                }

            def send(payload: dict[str, Any] | str, *, pause: bool = True) -> None:
                if pause and reply.delay:
                    time.sleep(reply.delay)
                data = payload if isinstance(payload, str) else json.dumps(payload)
                self.wfile.write(f"data: {data}\n\n".encode())
                self.wfile.flush()

            send(chunk({"role": "assistant", "content": ""}), pause=False)
            for piece in _split(reply.text, reply.chunks):
                send(chunk({"content": piece}))
            for index, call in enumerate(reply.tool_calls):
                send(
                    chunk(
                        {
                            "tool_calls": [
                                {
                                    "index": index,
                                    "id": call.id,
                                    "type": "function",
                                    "function": {"name": call.name, "arguments": ""},
                                }
                            ]
                        }
                    )
                )
                for piece in _split(call.arguments_json, reply.chunks):
                    send(
                        chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
                    )
            send(chunk({}, finish))
            if (body.get("stream_options") or {}).get("include_usage"):
                send(
                    {
                        "id": cid,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": name,
                        "choices": [],
                        "usage": usage,
                    },
                    pause=False,
                )
            send("[DONE]", pause=False)

    return Handler
