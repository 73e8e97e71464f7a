"""A small HTTP server on 127.0.0.1 that answers as the Hugging Face Hub does for the few requests huggingface_hub
makes to download a model, for the download tests (nothing leaves the machine; point HF_ENDPOINT at ``url``):

- ``GET /api/models/{id}/revision/{rev}?blobs=True``: the model's info, its files with their sizes (model_info);
- ``GET /api/models/{id}/tree/{commit}?recursive=True``: the file listing snapshot_download caches;
- ``HEAD`` and ``GET /{id}/resolve/{rev}/{file}``: a file's metadata (X-Repo-Commit, ETag, X-Linked-*) and its
  bytes (``Range`` honoured, as a resumed download asks).

Repositories answer as non-Xet ones (no ``X-Xet-Hash``). Every request is logged (``requests``); ``throttle``
slows file bodies, ``die_after`` cuts one file's body after so many bytes and stops the server, as a hub that dies
mid-file would.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from tests.hub_cache import commit_of, etag_of, is_lfs

API = re.compile(r"^/api/models/(?P<repo>[^/]+(?:/[^/]+)?)/(?P<what>revision|tree)/(?P<rev>[^/]+)/?$")
RESOLVE = re.compile(r"^/(?P<repo>[^/]+(?:/[^/]+)?)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")
CHUNK = 64 * 1024


@dataclass
class Repo:
    files: dict[str, bytes]
    commit: str
    refs: dict[str, str] = field(default_factory=dict)

    def etag(self, name: str) -> str:
        return etag_of(name, self.files[name])


class FakeHub:
    """The server: ``add`` repositories, ``start``, point HF_ENDPOINT at ``url``, read ``requests``; ``stop``."""

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path without the query)
        self.throttle: float | None = None  # bytes per second of file bodies (None: as fast as it goes)
        self.die_after: dict[str, int] = {}  # file name -> bytes sent before the server dies
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    def add(self, repo_id: str, files: dict[str, bytes | Path], refs: tuple[str, ...] = ("main",),
            commit: str | None = None) -> str:
        data = {n: (c if isinstance(c, bytes) else Path(c).read_bytes()) for n, c in files.items()}
        commit = commit or commit_of(repo_id, data, salt="hub")
        self.repos[repo_id] = Repo(files=data, commit=commit, refs={r: commit for r in refs})
        return commit

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self, port: int = 0) -> FakeHub:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_HEAD(self):
                hub._answer(self, body=False)

            def do_GET(self):
                hub._answer(self, body=True)

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="fake-hub", daemon=True).start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def file_bodies(self) -> list[str]:
        """The files whose bytes were asked for (GET on /resolve/)."""
        return [p for m, p in self.requests if m == "GET" and "/resolve/" in p]

    # answering ----------------------------------------------------------------------------------------------------

    def _revision(self, repo: Repo, rev: str) -> str | None:
        if rev in repo.refs:
            return repo.refs[rev]
        return repo.commit if rev == repo.commit else None

    def _answer(self, h: BaseHTTPRequestHandler, body: bool) -> None:
        path = unquote(urlsplit(h.path).path)
        with self._lock:
            self.requests.append((h.command, path))
        api, resolve = API.match(path), RESOLVE.match(path)
        match = api or resolve
        repo = self.repos.get(match["repo"]) if match else None
        if repo is None:
            return _send(h, 401 if match else 404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
        commit = self._revision(repo, match["rev"])
        if commit is None:
            return _send(h, 404, {"error": "Invalid rev id"}, {"X-Error-Code": "RevisionNotFound"})
        if api and api["what"] == "revision":
            siblings = [{"rfilename": n, "size": len(d), "blobId": etag_of("x.txt", d),
                         **({"lfs": {"size": len(d), "sha256": repo.etag(n), "pointerSize": 134}} if is_lfs(n) else {})}
                        for n, d in repo.files.items()]
            return _send(h, 200, {"id": match["repo"], "modelId": match["repo"], "sha": commit, "private": False,
                                  "siblings": siblings})
        if api:
            return _send(h, 200, [{"type": "file", "path": n, "size": len(d), "oid": etag_of("x.txt", d),
                                   **({"lfs": {"oid": repo.etag(n), "size": len(d), "pointerSize": 134}}
                                      if is_lfs(n) else {})} for n, d in repo.files.items()])
        name = resolve["file"]
        if name not in repo.files:
            return _send(h, 404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound",
                                                                  "X-Repo-Commit": commit})
        self._file(h, repo, commit, name, body)

    def _file(self, h: BaseHTTPRequestHandler, repo: Repo, commit: str, name: str, body: bool) -> None:
        data = repo.files[name]
        start = 0
        ranged = re.fullmatch(r"bytes=(\d+)-", h.headers.get("Range", "") or "")
        if ranged and body:
            start = min(int(ranged[1]), len(data))
        headers = {"X-Repo-Commit": commit, "ETag": f'"{repo.etag(name)}"', "Accept-Ranges": "bytes",
                   "Content-Type": "application/octet-stream"}
        if is_lfs(name):
            headers.update({"X-Linked-Etag": f'"{repo.etag(name)}"', "X-Linked-Size": str(len(data))})
        h.send_response(206 if start else 200)
        for k, v in headers.items():
            h.send_header(k, v)
        if start:
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        h.send_header("Content-Length", str(len(data) - start))
        h.end_headers()
        if not body:
            return
        limit = self.die_after.get(name)
        sent = start
        while sent < len(data):
            if limit is not None and sent >= limit:
                self._die(h)
                return
            piece = data[sent: min(len(data), sent + CHUNK, limit if limit is not None else len(data))]
            try:
                h.wfile.write(piece)
            except OSError:
                return
            sent += len(piece)
            if self.throttle:
                time.sleep(len(piece) / self.throttle)

    def _die(self, h: BaseHTTPRequestHandler) -> None:
        """Cut this connection mid-body and stop answering: the hub has gone away."""
        try:
            h.wfile.flush()
            h.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        h.close_connection = True
        threading.Thread(target=self.stop, daemon=True).start()


def _send(h: BaseHTTPRequestHandler, status: int, doc, headers: dict | None = None) -> None:
    raw = json.dumps(doc).encode()
    h.send_response(status)
    for k, v in (headers or {}).items():
        h.send_header(k, v)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(raw)))
    h.end_headers()
    if h.command != "HEAD":
        h.wfile.write(raw)


SESSION: FakeHub | None = None  # the test process's hub (tests/conftest.py starts it once; HF_ENDPOINT points at it)

__all__ = ["FakeHub", "SESSION"]
