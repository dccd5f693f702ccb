"""The checkpoint downloader against a real local HTTP server: fresh, resumed, restarted, interrupted, checksummed."""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from models.lit_download import ChecksumMismatch, WeightsUnavailable, fetch, local_sha256, recorded_sha256

PAYLOAD = bytes(range(256)) * 40  # 10 kB


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's naming
        server = self.server
        server.requests.append(self.headers.get("Range"))
        data, start = server.payload, 0
        asked = self.headers.get("Range")
        if asked and server.honour_range:
            start = int(asked.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        body = data[start:]
        self.wfile.write(body[: server.cut_after] if server.cut_after is not None else body)

    def log_message(self, *_):
        pass


@pytest.fixture()
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.payload, httpd.honour_range, httpd.cut_after, httpd.requests = PAYLOAD, True, None, []
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}/LiT-B16B_2.npz"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def test_fresh_download_is_renamed_into_place_with_its_checksum(server, tmp_path):
    dest = tmp_path / "cache" / "LiT-B16B_2.npz"
    assert fetch(server.url, dest, progress=False) == dest
    assert dest.read_bytes() == PAYLOAD and not dest.with_name(dest.name + ".part").exists()
    assert recorded_sha256(dest) == hashlib.sha256(PAYLOAD).hexdigest()
    fetch(server.url, dest, progress=False)  # cached: verified, not downloaded again
    assert len(server.requests) == 1


def test_partial_download_resumes_with_a_range_request(server, tmp_path):
    dest = tmp_path / "LiT-B16B_2.npz"
    dest.with_name(dest.name + ".part").write_bytes(PAYLOAD[:3000])
    fetch(server.url, dest, progress=False)
    assert server.requests == ["bytes=3000-"] and dest.read_bytes() == PAYLOAD


def test_complete_part_left_by_a_crash_is_finished_without_downloading_again(server, tmp_path):
    dest = tmp_path / "LiT-B16B_2.npz"
    dest.with_name(dest.name + ".part").write_bytes(PAYLOAD)
    fetch(server.url, dest, progress=False)
    assert server.requests == [f"bytes={len(PAYLOAD)}-"] and dest.read_bytes() == PAYLOAD


def test_server_ignoring_range_restarts_from_scratch(server, tmp_path):
    server.honour_range = False
    dest = tmp_path / "LiT-B16B_2.npz"
    dest.with_name(dest.name + ".part").write_bytes(b"stale bytes of another file")
    fetch(server.url, dest, progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_interrupted_download_is_never_used_and_resumes_later(server, tmp_path):
    dest = tmp_path / "LiT-B16B_2.npz"
    server.cut_after = 4000
    with pytest.raises(WeightsUnavailable, match="run again to resume"):
        fetch(server.url, dest, progress=False)
    assert not dest.exists() and dest.with_name(dest.name + ".part").stat().st_size == 4000
    server.cut_after = None
    fetch(server.url, dest, progress=False)
    assert server.requests[-1] == "bytes=4000-" and dest.read_bytes() == PAYLOAD


def test_corrupted_cached_file_fails_its_checksum(server, tmp_path):
    dest = tmp_path / "LiT-B16B_2.npz"
    fetch(server.url, dest, progress=False)
    dest.write_bytes(PAYLOAD[:-1] + b"\x00")
    with pytest.raises(ChecksumMismatch, match="corrupt or was replaced"):
        fetch(server.url, dest, progress=False)


def test_redownload_with_other_content_is_refused(server, tmp_path):
    dest = tmp_path / "LiT-B16B_2.npz"
    fetch(server.url, dest, progress=False)
    dest.unlink()  # the sidecar stays: a new download must match it
    server.payload = PAYLOAD[::-1]
    with pytest.raises(ChecksumMismatch, match="was recorded"):
        fetch(server.url, dest, progress=False)
    assert not dest.exists() and not dest.with_name(dest.name + ".part").exists()


def test_unreachable_server_names_the_url_and_the_ways_out(tmp_path):
    url = "http://127.0.0.1:9/LiT-B16B_2.npz"  # discard port: nothing listens
    with pytest.raises(WeightsUnavailable) as err:
        fetch(url, tmp_path / "LiT-B16B_2.npz", progress=False, timeout=5)
    message = str(err.value)
    assert url in message and "weights=" in message and "--weights" in message and "offline-lite" in message
    with pytest.raises(WeightsUnavailable, match="download=False"):
        fetch(url, tmp_path / "LiT-B16B_2.npz", download=False)


def test_local_checksum_is_memoised_until_the_file_changes(tmp_path, monkeypatch):
    path, memo = tmp_path / "w.npz", tmp_path / "memo"
    path.write_bytes(PAYLOAD)
    assert local_sha256(path, memo) == hashlib.sha256(PAYLOAD).hexdigest()
    monkeypatch.setattr("models.lit_download.sha256_file", lambda _: pytest.fail("hashed again"))
    assert local_sha256(path, memo) == hashlib.sha256(PAYLOAD).hexdigest()
    monkeypatch.undo()
    path.write_bytes(PAYLOAD + b"more")
    assert local_sha256(path, memo) == hashlib.sha256(PAYLOAD + b"more").hexdigest()
