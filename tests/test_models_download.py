"""download(): fetched from a local http.server on 127.0.0.1 (no network), hash-checked, atomic."""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
from functools import partial
from pathlib import Path

import pytest

from grounded_sam.errors import MissingCheckpointError
from grounded_sam.models.download import (
    ChecksumError,
    DownloadError,
    ModelsMissingError,
    download,
    ensure_models,
    fetch_file,
    human_size,
    sha256_file,
    verify,
)
from grounded_sam.models.registry import ModelEntry, ModelFile, is_present, missing_files


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass


@pytest.fixture
def server(tmp_path, monkeypatch):
    """A static file server on 127.0.0.1 in a thread; yields (base URL, served folder)."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    served = tmp_path / "served"
    served.mkdir()
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(_QuietHandler, directory=str(served))
    )
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", served
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def closed_port_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now: connection refused
    return f"http://127.0.0.1:{port}/weights.bin"


def make_entry(base: str, served: Path, payloads: dict[str, bytes], **overrides) -> ModelEntry:
    files = []
    for name, data in payloads.items():
        (served / name).write_bytes(data)
        spec = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        spec.update(overrides.get(name, {}))
        files.append(ModelFile(f"{base}/{name}", f"toy/{name}", spec["sha256"], spec["size"]))
    return ModelEntry(name="toy", kind="sam", files=tuple(files), path="toy/weights.bin")


def leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".part")]


def test_download_fetches_verifies_and_places_files(server, tmp_path, capsys):
    base, served = server
    payloads = {"weights.bin": bytes(range(256)) * 5000, "config.json": b'{"a": 1}'}
    entry = make_entry(base, served, payloads)
    root = tmp_path / "models"
    assert missing_files(entry, root) == [root / "toy/weights.bin", root / "toy/config.json"]

    path = download(entry, models_dir=root, progress=False)
    assert path == root / "toy/weights.bin"
    for name, data in payloads.items():
        assert (root / "toy" / name).read_bytes() == data
        assert sha256_file(root / "toy" / name) == hashlib.sha256(data).hexdigest()
    assert is_present(entry, root) and missing_files(entry, root) == []
    assert verify(entry, root) == [] and leftovers(root) == []
    err = capsys.readouterr().err
    assert f"{base}/weights.bin" in err and str(root / "toy/weights.bin") in err
    assert human_size(len(payloads["weights.bin"])) in err and "verified" in err

    # present files are kept; force fetches again
    (served / "weights.bin").write_bytes(b"changed on the server")
    download(entry, models_dir=root, progress=False)
    assert (root / "toy/weights.bin").read_bytes() == payloads["weights.bin"]
    assert "already present" in capsys.readouterr().err


def test_wrong_hash_raises_and_leaves_no_file(server, tmp_path):
    base, served = server
    wrong = "0" * 64
    entry = make_entry(
        base, served, {"weights.bin": b"x" * 1000}, **{"weights.bin": {"sha256": wrong}}
    )
    root = tmp_path / "models"
    with pytest.raises(ChecksumError) as info:
        download(entry, models_dir=root, progress=False)
    actual = hashlib.sha256(b"x" * 1000).hexdigest()
    assert info.value.expected == wrong and info.value.actual == actual
    assert wrong in str(info.value) and actual in str(info.value)
    assert not (root / "toy/weights.bin").exists() and leftovers(root) == []


def test_size_mismatch_and_http_errors(server, tmp_path):
    base, served = server
    root = tmp_path / "models"
    entry = make_entry(base, served, {"weights.bin": b"y" * 100}, **{"weights.bin": {"size": 99}})
    with pytest.raises(DownloadError, match="99"):
        download(entry, models_dir=root, progress=False)
    assert not (root / "toy/weights.bin").exists() and leftovers(root) == []

    missing = ModelFile(f"{base}/nope.bin", "toy/nope.bin", None, None)
    with pytest.raises(DownloadError, match="HTTP 404") as info:
        fetch_file(missing, root / "toy/nope.bin", progress=False, log=lambda _: None)
    assert "nope.bin" in str(info.value) and "by hand" in str(info.value)
    assert leftovers(root) == []


class _ShortHandler(_QuietHandler):
    """Announces 1000 bytes, sends 10 and closes: a transfer cut short."""

    def do_GET(self):  # noqa: N802 - the base class's name
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b"0123456789")
        self.close_connection = True


def test_a_transfer_cut_short_is_a_clear_error(tmp_path, monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ShortHandler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/weights.bin"
        file = ModelFile(url, "toy/weights.bin", "a" * 64, 1000)
        root = tmp_path / "models"
        with pytest.raises(DownloadError) as info:
            fetch_file(file, root / "toy/weights.bin", progress=False, log=lambda _: None)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
    assert url in str(info.value) and "by hand" in str(info.value)
    assert not (root / "toy/weights.bin").exists() and leftovers(root) == []
    assert list((root / "toy").iterdir()) == []  # torch.hub's own temporary file is gone too


def test_progress_is_shown_on_stderr(server, tmp_path, capsys):
    base, served = server
    entry = make_entry(base, served, {"weights.bin": b"p" * 3000})
    download(entry, models_dir=tmp_path / "m", progress=True, log=lambda _: None)
    err = capsys.readouterr().err
    assert "100%" in err and "2.93k" in err  # tqdm's bar: done, 3000 bytes in KiB


def test_unknown_hash_downloads_unverified_and_prints_it(server, tmp_path):
    base, served = server
    lines = []
    entry = make_entry(
        base, served, {"weights.bin": b"z" * 10}, **{"weights.bin": {"sha256": None}}
    )
    download(entry, models_dir=tmp_path / "m", progress=False, log=lines.append)
    text = "\n".join(lines)
    assert hashlib.sha256(b"z" * 10).hexdigest() in text and "unverified" in text


def test_unreachable_url_is_a_clear_error(tmp_path):
    url = closed_port_url()
    file = ModelFile(url, "toy/weights.bin", "a" * 64, 10)
    entry = ModelEntry(name="toy", kind="sam", files=(file,), path="toy/weights.bin")
    root = tmp_path / "models"
    with pytest.raises(DownloadError) as info:
        download(entry, models_dir=root, progress=False, log=lambda _: None)
    message = str(info.value)
    assert "weights.bin" in message and url in message  # the file and the URL
    assert "offline" in message and str(root / "toy/weights.bin") in message  # where to put it
    assert not (root / "toy/weights.bin").exists() and leftovers(root) == []


def test_ensure_models_lists_missing_files_and_commands(server, tmp_path):
    base, served = server
    entry = make_entry(base, served, {"weights.bin": b"w" * 64, "config.json": b"{}"})
    root = tmp_path / "models"
    (root / "toy").mkdir(parents=True)
    (root / "toy/config.json").write_bytes(b"{}")  # one of two files already there
    with pytest.raises(ModelsMissingError) as info:
        ensure_models([entry], models_dir=root)
    assert isinstance(info.value, MissingCheckpointError)
    assert info.value.missing == {"toy": [root / "toy/weights.bin"]}
    message = str(info.value)
    assert str(root / "toy/weights.bin") in message and "config.json" not in message
    assert "grounded-sam download toy" in message

    paths = ensure_models(
        [entry], models_dir=root, download=True, progress=False, log=lambda _: None
    )
    assert paths == {"toy": root / "toy/weights.bin"}
    assert (root / "toy/weights.bin").read_bytes() == b"w" * 64
    assert ensure_models([entry], models_dir=root) == paths  # nothing missing: no error


def test_verify_reports_corrupt_files(tmp_path):
    data = b"good bytes"
    file = ModelFile(
        "http://127.0.0.1:9/x", "toy/weights.bin", hashlib.sha256(data).hexdigest(), len(data)
    )
    entry = ModelEntry(name="toy", kind="sam", files=(file,), path="toy/weights.bin")
    (tmp_path / "toy").mkdir()
    assert verify(entry, tmp_path) == [f"{tmp_path / 'toy/weights.bin'}: missing"]
    (tmp_path / "toy/weights.bin").write_bytes(b"bad! bytes")  # same size, other bytes
    assert is_present(entry, tmp_path)  # sizes match ...
    (problem,) = verify(entry, tmp_path)  # ... but the hash does not
    assert "sha256" in problem and file.sha256 in problem


def test_a_damaged_file_in_place_is_fetched_again_and_offline_says_what_is_wrong(
    server, tmp_path, capsys
):
    import stat

    from grounded_sam.models.registry import model_state

    base, served = server
    good = bytes(range(256)) * 40
    entry = make_entry(base, served, {"weights.bin": good})
    root = tmp_path / "models"
    dest = root / "toy/weights.bin"
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"X" * len(good))  # the right size, other bytes: only sha256 tells
    assert model_state(entry, root) == "present"  # info's size check cannot see it ...
    download(entry, models_dir=root, progress=False)  # ... download's sha256 check does
    assert dest.read_bytes() == good
    err = capsys.readouterr().err
    assert f"{dest} is corrupt: sha256" in err and "fetching it again" in err
    assert stat.S_IMODE(dest.stat().st_mode) & 0o044 == 0o044  # readable, not mkstemp's 0600

    dest.write_bytes(good[:100])  # truncated: info says corrupt
    assert model_state(entry, root) == "corrupt"
    offline = ModelEntry(
        name="toy",
        kind="sam",
        files=(ModelFile(closed_port_url(), "toy/weights.bin", entry.files[0].sha256, len(good)),),
        path="toy/weights.bin",
    )
    with pytest.raises(DownloadError) as info:
        download(offline, models_dir=root, progress=False)
    message = str(info.value)
    assert f"{dest} is corrupt: 100 bytes, expected {len(good)}" in message
    assert "cannot be fetched again" in message
    dest.unlink()
    assert model_state(entry, root) == "missing"
