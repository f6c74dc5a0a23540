"""Loopback HTTP peers that speak the documented wire protocols of services that cannot run here:
Ollama (`/api/chat` NDJSON streaming, `/api/tags`, `/api/embed`) and an OpenAI-compatible
endpoint (`/v1/chat/completions` with SSE, `/v1/models`, `/v1/embeddings`). The embedding
endpoints run a real model in the peer (e5, as a GPU node would run a larger one), honouring
the e5 "query: " and "passage: " prefixes the client sends. They record every request so tests
can assert what went over the wire, and answer with text built from the request (the first
sentence of source 1, cited), streamed in several pieces with a small delay."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


def grounded_answer(messages: list[dict[str, Any]]) -> str:
    user = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
    m = re.search(r'<source n="1"[^>]*>\n(.*?)\n</source>', user, flags=re.S)
    if not m:
        return "Jag vet inte."
    body = re.sub(r"^[#>*\-\s]+", "", m.group(1).strip())
    sentence = re.split(r"(?<=[.!?])\s", body, maxsplit=1)[0].rstrip(".")
    return f"{sentence} [1]."


Vectors = Callable[[list[str]], list[list[float]]]


class Peer:
    def __init__(self, answer: Callable[[list[dict[str, Any]]], str] = grounded_answer,
                 delay_s: float = 0.05, embed: Vectors | None = None,
                 fail_first: int = 0) -> None:
        self.embed = embed
        self.fail_first = fail_first  # answer this many embedding requests with a 503
        self.requests: list[dict[str, Any]] = []
        self.raw: list[bytes] = []
        self.answer = answer
        self.delay_s = delay_s
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def pieces(self, text: str) -> list[str]:
        return re.findall(r"\S+\s*", text)

    def start(self) -> Self:
        peer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _body(self) -> dict[str, Any]:
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                peer.raw.append(raw)
                data: dict[str, Any] = json.loads(raw or b"{}")
                peer.requests.append({"path": self.path, "headers": dict(self.headers),
                                      "json": data})
                return data

            def _json(self, code: int, obj: Any) -> None:
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                peer.requests.append({"path": self.path, "headers": dict(self.headers),
                                      "json": None})
                peer.handle_get(self)

            def do_POST(self) -> None:
                peer.handle_post(self, self._body())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    def chat_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["json"] is not None]

    def embedding_failure(self, h: Any) -> bool:
        if self.embed is None:
            h._json(404, {"error": "no embedding model loaded"})
            return True
        if self.fail_first > 0:
            self.fail_first -= 1
            h._json(503, {"error": "model is loading"})
            return True
        return False

    def handle_get(self, h: Any) -> None:
        raise NotImplementedError

    def handle_post(self, h: Any, body: dict[str, Any]) -> None:
        raise NotImplementedError


class OllamaPeer(Peer):
    model = "qwen2.5:7b-instruct"

    def handle_get(self, h: Any) -> None:
        if h.path == "/api/tags":
            h._json(200, {"models": [{"name": self.model, "model": self.model, "size": 1}]})
        else:
            h._json(404, {"error": "not found"})

    def handle_post(self, h: Any, body: dict[str, Any]) -> None:
        if h.path == "/api/embed":
            if self.embedding_failure(h):
                return
            texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
            assert self.embed is not None
            h._json(200, {"model": body.get("model"), "embeddings": self.embed(texts),
                          "total_duration": 1, "load_duration": 1,
                          "prompt_eval_count": len(texts)})
            return
        if h.path != "/api/chat":
            h._json(404, {"error": "not found"})
            return
        text = self.answer(body.get("messages", []))
        h.send_response(200)
        h.send_header("Content-Type", "application/x-ndjson")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()

        def chunk(obj: dict[str, Any]) -> None:
            line = (json.dumps(obj) + "\n").encode()
            h.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
            h.wfile.flush()

        now = "2026-11-27T08:00:00Z"
        for piece in self.pieces(text):
            chunk({"model": body.get("model"), "created_at": now,
                   "message": {"role": "assistant", "content": piece}, "done": False})
            time.sleep(self.delay_s)
        chunk({"model": body.get("model"), "created_at": now,
               "message": {"role": "assistant", "content": ""}, "done": True,
               "done_reason": "stop", "total_duration": 1, "load_duration": 1,
               "prompt_eval_count": 10, "prompt_eval_duration": 1, "eval_count": 5,
               "eval_duration": 1})
        h.wfile.write(b"0\r\n\r\n")
        h.wfile.flush()


def e5_vectors(model: Any) -> Vectors:
    """A peer's embedding model: e5, reading the prefix each text was sent with."""

    def embed(texts: list[str]) -> list[list[float]]:
        out: list[list[float]] = []
        for t in texts:
            if t.startswith("query: "):
                out.extend(model.embed_queries([t.removeprefix("query: ")]).tolist())
            else:
                out.extend(model.embed_passages([t.removeprefix("passage: ")]).tolist())
        return out

    return embed


class OpenAIPeer(Peer):
    model = "mistral-small-latest"

    def handle_get(self, h: Any) -> None:
        if h.path.rstrip("/").endswith("/models"):
            h._json(200, {"object": "list", "data": [{"id": self.model, "object": "model"}]})
        else:
            h._json(404, {"error": {"message": "not found"}})

    def handle_post(self, h: Any, body: dict[str, Any]) -> None:
        if h.headers.get("authorization") != "Bearer test-key":
            h._json(401, {"error": {"message": "bad key"}})
            return
        if h.path.endswith("/embeddings"):
            if self.embedding_failure(h):
                return
            texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
            assert self.embed is not None
            vectors = self.embed(texts)
            # Out of order on purpose: clients must place each vector by its index.
            data = [{"object": "embedding", "index": i, "embedding": v}
                    for i, v in reversed(list(enumerate(vectors)))]
            h._json(200, {"object": "list", "data": data, "model": body.get("model"),
                          "usage": {"prompt_tokens": len(texts), "total_tokens": len(texts)}})
            return
        if not h.path.endswith("/chat/completions"):
            h._json(404, {"error": {"message": "not found"}})
            return
        text = self.answer(body.get("messages", []))
        base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0,
                "model": body.get("model")}
        if not body.get("stream"):
            h._json(200, {**base, "object": "chat.completion", "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text},
                 "finish_reason": "stop"}]})
            return
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()

        def event(payload: str) -> None:
            data = f"data: {payload}\n\n".encode()
            h.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            h.wfile.flush()

        event(json.dumps({**base, "choices": [{"index": 0, "delta": {"role": "assistant",
                                                                    "content": ""},
                                                "finish_reason": None}]}))
        for piece in self.pieces(text):
            event(json.dumps({**base, "choices": [{"index": 0, "delta": {"content": piece},
                                                    "finish_reason": None}]}))
            time.sleep(self.delay_s)
        event(json.dumps({**base, "choices": [{"index": 0, "delta": {},
                                                "finish_reason": "stop"}]}))
        event("[DONE]")
        h.wfile.write(b"0\r\n\r\n")
        h.wfile.flush()
