"""Starts the real smart-authz binary ($SMART_AUTHZ_BIN, built by cargo) on its built-in
development configuration on 127.0.0.1, and mints its development tokens
with `smart-authz token`."""

from __future__ import annotations

import json
import os
import queue
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest


def _binary() -> str:
    binary = os.environ.get("SMART_AUTHZ_BIN")
    if not binary or not Path(binary).is_file():
        pytest.fail("set SMART_AUTHZ_BIN to the smart-authz binary (cargo build)")
    return binary


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _serving_address(line: str) -> str | None:
    """The address of the JSON "smart-authz serving" log line, if ``line`` is it."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or record.get("message") != "smart-authz serving":
        return None
    return record.get("listen")


@pytest.fixture(scope="session")
def unix_socket(tmp_path_factory) -> Path:
    """The Unix socket the service also answers on (``unix_listen``)."""
    return tmp_path_factory.mktemp("socket") / "grpc.sock"


@pytest.fixture(scope="session")
def address(unix_socket):
    """The service listens on a port the kernel picks and announces it in its log: a port
    probed free first could be taken by another test's listener before the service binds.
    It answers on ``unix_socket`` too."""
    binary = _binary()
    # Every SMART_AUTHZ_* variable is configuration to the service: pass none of the
    # test's own (SMART_AUTHZ_BIN), and turn the metrics listener off.
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("SMART_AUTHZ_") and name != "RUST_LOG"
    }
    environment["SMART_AUTHZ_TELEMETRY__METRICS_LISTEN"] = ""
    environment["SMART_AUTHZ_LOG__FORMAT"] = "json"
    environment["SMART_AUTHZ_UNIX_LISTEN"] = str(unix_socket)
    server = subprocess.Popen(
        [binary, "serve", "--listen", "127.0.0.1:0"],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def drain() -> None:
        # Read to the end: the pipe is drained for the life of the service.
        for line in server.stderr:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=drain, daemon=True).start()
    try:
        seen = []
        deadline = time.monotonic() + 30
        address = None
        while address is None:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"smart-authz did not start within 30 s: {''.join(seen)}")
            if line is None:
                pytest.fail(f"smart-authz exited before serving: {''.join(seen)}")
            seen.append(line)
            address = _serving_address(line)
        yield address
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.fixture(scope="session")
def mint():
    binary = _binary()

    def mint(scope: str, patient: str | None = None, **claims: str) -> str:
        args = [binary, "token", "--scope", scope]
        if patient:
            args += ["--patient", patient]
        for name, value in claims.items():
            args += [f"--{name.replace('_', '-')}", value]
        return subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip()

    return mint


@pytest.fixture
def free_port():
    return _free_port()
