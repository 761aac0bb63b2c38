"""A registry that declares a small blob and streams it forever: the download stops at the size
the descriptor declares plus a margin, with a clear error, instead of filling the disk."""

from __future__ import annotations

import io
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from graphbuild.registry.client import OVERRUN_MARGIN, RegistryClient
from graphbuild.registry.errors import DigestMismatchError

DIGEST = "sha256:" + "ab" * 32
GUARD_S = 30


class _Endless(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunk = b"x" * 4096
        try:
            while True:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except OSError:
            pass  # the client hung up: what the test wants

    def log_message(self, *args: object) -> None:
        pass


def test_a_blob_streamed_forever_stops_past_its_declared_size() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Endless)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    dest = io.BytesIO()
    outcome: list[BaseException | int] = []

    def fetch() -> None:
        client = RegistryClient(f"127.0.0.1:{server.server_port}")
        try:
            outcome.append(client.get_blob("evil/base", DIGEST, dest, size=180))
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome.append(exc)

    worker = threading.Thread(target=fetch, daemon=True)
    worker.start()
    worker.join(GUARD_S)
    server.shutdown()
    assert not worker.is_alive(), "the download did not stop"
    assert isinstance(outcome[0], DigestMismatchError), outcome
    assert "more than the 180 bytes the descriptor declares" in str(outcome[0])
    assert dest.tell() <= 180 + OVERRUN_MARGIN + (1 << 20)  # at most one read past the limit
