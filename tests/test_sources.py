"""Downloads against a local HTTP server on 127.0.0.1: sha256 checks, trust on first use, partial downloads."""

import hashlib
import http.server
import threading
from pathlib import Path

import pytest

from conftest import save_tiny_vit, tiny_zoo_text
from vitbench.errors import CheckpointError
from vitbench.zoo import sources
from vitbench.zoo.load import load_model
from vitbench.zoo.schema import load_zoo


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict = {}
    hits: list = []

    def do_GET(self):  # noqa: N802
        self.hits.append(self.path)
        path = self.path.split("?")[0]
        if path == "/truncated":
            body = self.files["/w.safetensors"]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 3])
            return
        if path == "/download":  # Google-Drive-like endpoint: ?id=...
            path = "/w.safetensors"
        body = self.files.get(path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    weights = save_tiny_vit(tmp_path / "w.safetensors")
    _Handler.files = {"/w.safetensors": weights.read_bytes(),
                      "/page.safetensors": b"<!DOCTYPE html><html><body>confirm download</body></html>"}
    _Handler.hits = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", hashlib.sha256(weights.read_bytes()).hexdigest()
    httpd.shutdown()


def _entry(tmp_path, source, sha=None):
    extra = f", sha256: {sha}" if sha else ""
    text = tiny_zoo_text(source).replace(f"weights: {{source: {source}}}", f"weights: {{source: '{source}'{extra}}}")
    path = tmp_path / "remote_zoo.yaml"
    path.write_text(text)
    return load_zoo(path).get("tiny-vit.test")


def test_download_once_with_pinned_sha(server, tmp_path):
    url, sha = server
    entry = _entry(tmp_path, f"{url}/w.safetensors", sha)
    first = load_model(entry)
    second = load_model(entry)
    assert first.weights_sha256 == second.weights_sha256 == sha
    assert _Handler.hits.count("/w.safetensors") == 1  # cached after the first download
    assert sources.cache_path(entry.weights.source).is_file()


def test_wrong_sha_keeps_nothing(server, tmp_path):
    url, _ = server
    entry = _entry(tmp_path, f"{url}/w.safetensors", "1" * 64)
    with pytest.raises(CheckpointError, match="expected 1111"):
        load_model(entry)
    folder = sources.cache_path(entry.weights.source).parent
    assert not any(folder.iterdir())  # no partial or wrong file left behind


def test_trust_on_first_use_records_and_checks(server, tmp_path):
    url, sha = server
    entry = _entry(tmp_path, f"{url}/w.safetensors")
    loaded = load_model(entry)
    assert loaded.trust == "tofu"
    assert sources.recorded_sha256(entry.weights.source)["sha256"] == sha
    cached = sources.cache_path(entry.weights.source)
    cached.write_bytes(cached.read_bytes()[:-8] + b"tampered")
    with pytest.raises(CheckpointError, match=f"expected {sha}"):
        load_model(entry)


def test_truncated_download_is_not_used(server, tmp_path):
    url, _ = server
    entry = _entry(tmp_path, f"{url}/truncated")
    with pytest.raises(CheckpointError, match="stopped early"):
        load_model(entry)
    assert not sources.cache_path(entry.weights.source).exists()
    assert not list(sources.cache_path(entry.weights.source).parent.glob("*partial*"))


def test_html_page_is_refused(server, tmp_path):
    url, _ = server
    with pytest.raises(CheckpointError, match="HTML page"):
        load_model(_entry(tmp_path, f"{url}/page.safetensors"))


def test_gdrive_source_uses_confirm_endpoint(server, tmp_path, monkeypatch):
    url, sha = server
    monkeypatch.setenv("VITBENCH_GDRIVE_URL", url + "/download?id={id}&export=download&confirm=t")
    loaded = load_model(_entry(tmp_path, "gdrive:1AbC", sha))
    assert loaded.weights_sha256 == sha
    assert any(h.startswith("/download?id=1AbC") for h in _Handler.hits)


def test_unreachable_server_is_one_clear_error(tmp_path):
    entry = _entry(tmp_path, "http://127.0.0.1:9/none.safetensors")
    with pytest.raises(CheckpointError, match="cannot download"):
        load_model(entry)


def test_sha_sidecar_rehashes_changed_file(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")
    assert sources.cached_sha256(path) == hashlib.sha256(b"abc").hexdigest()
    path.write_bytes(b"abcd")
    assert sources.cached_sha256(path) == hashlib.sha256(b"abcd").hexdigest()


def test_bundled_source_resolves_into_package():
    assert sources.local_path("bundled:x.safetensors", Path("/nowhere")) == sources.BUNDLED_WEIGHTS / "x.safetensors"
