"""`OwnerProxy`: the published API port of a lean `--watch` owner, forwarding each connection to its worker.

Clients (the search CLI, the UI, `indexer status`) keep talking to the port in `owner.json`; behind it the worker
process (`indexer.watcher.worker`) may be running or asleep (`indexer.watcher.supervisor`). The proxy reads only a
request's head: `GET /health` is answered here (it must come back within a second, and the parent's pid is the one
in `owner.json`), `GET /status` too while no worker runs (its last status, with the token checked here as the API
does); anything else wakes a worker if needed and is then relayed byte for byte, so streaming answers (`/scroll`),
errors and authentication stay the API's own.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import socketserver
import threading

from indexer.owner.ownership import UNAUTHORIZED

HEAD_LIMIT = 64 * 1024  # a request head longer than this is refused
CHUNK = 64 * 1024


class OwnerProxy:
    def __init__(self, supervisor, port: int = 0, host: str = "127.0.0.1"):
        self.supervisor = supervisor
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                proxy._serve(self.request)

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.server = socketserver.ThreadingTCPServer((host, port), Handler, bind_and_activate=True)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, name="loupe-proxy", daemon=True)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def start(self) -> int:
        self._thread.start()
        return self.port

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- one connection -------------------------------------------------------------------------------------------

    def _serve(self, client: socket.socket) -> None:
        head = _read_head(client)
        if head is None:
            return
        method, path, headers = _parse_head(head)
        if method == "GET" and path == "/health":
            _answer(client, 200, {"ok": True, "pid": os.getpid(), "home": str(self.supervisor.settings.home)})
            return
        if method == "GET" and path == "/status":
            status = self.supervisor.sleeping_status()
            if status is not None:
                if not self._authorised(headers):
                    _answer(client, 401, {"detail": UNAUTHORIZED, "error": "unauthorized"})
                else:
                    _answer(client, 200, status)
                return
        with self.supervisor.request(counts=path != "/status"):
            try:
                port = self.supervisor.ensure_awake()
                upstream = socket.create_connection(("127.0.0.1", port), timeout=30)
            except Exception as err:  # noqa: BLE001 (any failure to reach a worker is one clear 503)
                _answer(client, 503, {"detail": f"the owner's worker is not available: {err}",
                                      "error": "unavailable"})
                return
            with upstream:
                upstream.settimeout(None)
                upstream.sendall(head)
                _relay(client, upstream)

    def _authorised(self, headers: dict[str, str]) -> bool:
        given = headers.get("authorization", "")
        expected = f"Bearer {self.supervisor.ownership.token}"
        return secrets.compare_digest(given.encode(), expected.encode())


def _read_head(sock: socket.socket) -> bytes | None:
    """Bytes up to and including the blank line that ends the head, plus whatever body came with them."""
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > HEAD_LIMIT:
            _answer(sock, 431, {"detail": "request head too large", "error": "invalid"})
            return None
        try:
            chunk = sock.recv(CHUNK)
        except OSError:
            return None
        if not chunk:
            return None
        data += chunk
    return data


def _parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    method, target = (parts[0], parts[1]) if len(parts) >= 2 else ("", "")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return method, target.split("?", 1)[0], headers


def _answer(sock: socket.socket, status: int, body: dict) -> None:
    data = json.dumps(body).encode()
    reason = {200: "OK", 401: "Unauthorized", 431: "Request Header Fields Too Large",
              503: "Service Unavailable"}[status]
    head = (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(data)}\r\n"
            + ('www-authenticate: Bearer\r\n' if status == 401 else "") + "connection: close\r\n\r\n")
    with contextlib.suppress(OSError):
        sock.sendall(head.encode() + data)


def _relay(client: socket.socket, upstream: socket.socket) -> None:
    """Copy both ways until each side has finished sending (half-closes are passed on)."""

    def pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := src.recv(CHUNK):
                dst.sendall(chunk)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    upward = threading.Thread(target=pump, args=(client, upstream), daemon=True)
    upward.start()
    pump(upstream, client)
    with contextlib.suppress(OSError):  # the answer is complete: a client keeping its connection open is let go
        client.shutdown(socket.SHUT_RD)
    upward.join(timeout=5)
