"""A Hugging Face Hub stand-in on the loopback interface, for the fetch tests.

It answers what huggingface_hub asks: `GET /api/models/<repo>[/revision/<rev>]?blobs=True`
(the file list with sizes, git blob ids and LFS sha256), and `GET|HEAD
/<repo>/resolve/<rev>/<path>` with ranged requests and the hub's X-Repo-Commit / X-Linked-*
headers. Faults are switched on per test: a required token, a file served with other bytes,
a server that goes away mid-file, a slow file (to kill a fetch half-way).
"""
from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from engine import layout

LFS_SUFFIXES = (".pth", ".pt", ".safetensors", ".model")
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def repos_from_checkpoint(ckpt: Path, extra: dict[str, dict[str, bytes]] | None = None) -> dict:
    """repo -> {path in repo: bytes}: every file of a checkpoint folder (arch.json excepted,
    the published repositories have none) in the repository it is published in, plus `extra`."""
    repos: dict[str, dict[str, bytes]] = {}
    for path in sorted(ckpt.rglob("*")):
        rel = path.relative_to(ckpt).as_posix()
        if path.is_file() and "/" in rel:
            repos.setdefault(layout.source_of(rel), {})[layout.path_in_source(rel)] = path.read_bytes()
    for repo, files in (extra or {}).items():
        repos.setdefault(repo, {}).update(files)
    return repos


@dataclass
class FakeHub:
    repos: dict[str, dict[str, bytes]]
    token: str | None = None  # when set, requests without `Bearer <token>` get 401
    corrupt: set[str] = field(default_factory=set)  # paths served with other bytes of the same size
    vanish_after: dict[str, int] = field(default_factory=dict)  # path -> bytes sent before the server dies
    slow: dict[str, float] = field(default_factory=dict)  # path -> seconds between 64 KiB chunks
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # method, path, Range
    sent: dict[str, int] = field(default_factory=dict)  # path -> file bytes sent

    def start(self) -> str:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                hub._answer(self, body=True)

            def do_HEAD(self):
                hub._answer(self, body=False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        return self.url

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def downloads(self, path: str) -> list[str | None]:
        """The Range header of every GET of a file (None: from the start)."""
        return [rng for method, p, rng in self.requests if method == "GET" and p.endswith("/" + path)]

    def _answer(self, handler: BaseHTTPRequestHandler, body: bool) -> None:
        url = handler.path.split("?")[0]
        self.requests.append((handler.command, url, handler.headers.get("Range")))
        if self.token and handler.headers.get("Authorization") != f"Bearer {self.token}":
            return self._reply(handler, 401, {"X-Error-Message": "Invalid credentials"}, b"unauthorized", body)
        if match := re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/[^/]+)?", url):
            return self._model_info(handler, match.group(1), body)
        if match := re.fullmatch(r"/([^/]+/[^/]+)/resolve/[^/]+/(.+)", url):
            return self._file(handler, match.group(1), match.group(2), body)
        self._reply(handler, 404, {}, b"not found", body)

    def _model_info(self, handler, repo: str, body: bool) -> None:
        if repo not in self.repos:
            return self._reply(handler, 404, {"X-Error-Code": "RepoNotFound"}, b"{}", body)
        siblings = []
        for path, data in sorted(self.repos[repo].items()):
            entry = {"rfilename": path, "size": len(data), "blobId": git_oid(data)}
            if path.endswith(LFS_SUFFIXES):
                entry["lfs"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
            siblings.append(entry)
        info = {"id": repo, "modelId": repo, "sha": COMMIT, "private": False, "siblings": siblings}
        self._reply(handler, 200, {"Content-Type": "application/json"}, json.dumps(info).encode(), body)

    def _file(self, handler, repo: str, path: str, body: bool) -> None:
        data = self.repos.get(repo, {}).get(path)
        if data is None:
            return self._reply(handler, 404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": COMMIT},
                               b"entry not found", body)
        etag = hashlib.sha256(data).hexdigest() if path.endswith(LFS_SUFFIXES) else git_oid(data)
        if path in self.corrupt:
            data = bytes(b ^ 0xFF for b in data)
        start = 0
        if rng := handler.headers.get("Range"):
            start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
        headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{etag}"', "X-Linked-Size": str(len(data)),
                   "Accept-Ranges": "bytes", "Content-Length": str(len(data) - start)}
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        handler.send_response(206 if start else 200)
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.end_headers()
        if body:
            self._stream(handler, path, data, start)

    def _stream(self, handler, path: str, data: bytes, start: int) -> None:
        chunk, position = 64 * 1024, start
        while position < len(data):
            end = min(len(data), position + chunk)
            if path in self.vanish_after and end > self.vanish_after[path]:
                end = max(position, self.vanish_after[path])
                handler.wfile.write(data[position:end])
                self.sent[path] = self.sent.get(path, 0) + end - position
                handler.wfile.flush()
                threading.Thread(target=self.stop, daemon=True).start()
                handler.close_connection = True
                handler.connection.close()
                return
            handler.wfile.write(data[position:end])
            handler.wfile.flush()
            self.sent[path] = self.sent.get(path, 0) + end - position
            position = end
            if path in self.slow:
                time.sleep(self.slow[path])

    @staticmethod
    def _reply(handler, status: int, headers: dict, payload: bytes, body: bool) -> None:
        handler.send_response(status)
        for key, value in {**headers, "Content-Length": str(len(payload))}.items():
            handler.send_header(key, value)
        handler.end_headers()
        if body:
            handler.wfile.write(payload)


def git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
