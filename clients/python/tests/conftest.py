"""Starts the real smart-authz binary ($SMART_AUTHZ_BIN, built by cargo) on its built-in
development configuration, on a free port of 127.0.0.1, and mints its development tokens
with `smart-authz token`."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import grpc
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


@pytest.fixture(scope="session")
def address():
    binary = _binary()
    address = f"127.0.0.1:{_free_port()}"
    # Every SMART_AUTHZ_* variable is configuration to the service: pass none of the
    # test's own (SMART_AUTHZ_BIN), and turn the metrics listener off.
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith("SMART_AUTHZ_")
    }
    environment["SMART_AUTHZ_TELEMETRY__METRICS_LISTEN"] = ""
    server = subprocess.Popen(
        [binary, "serve", "--listen", address],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        channel = grpc.insecure_channel(address)
        try:
            grpc.channel_ready_future(channel).result(timeout=30)
        except grpc.FutureTimeoutError:
            server.kill()
            pytest.fail(f"smart-authz did not start: {server.stderr.read().decode()}")
        finally:
            channel.close()
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
