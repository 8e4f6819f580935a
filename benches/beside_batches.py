#!/usr/bin/env python3
"""The latency of small calls while large batches are decided beside them.

Starts the server (AUTHZ_BIN, the built-in development configuration) on a port the kernel
gives it, pinned to CPU 0 where `taskset` can pin it, then for DURATION seconds sends one
cached `CheckAccess` a millisecond and times each, while two other processes send
`BatchCheckAccess` of ENTRIES reads back to back (none with BATCH=0). Prints the small
calls' p50, p90, p99 and maximum. A benchmark, not a test: docs/performance-log.md,
"Batches that hand the runtime back", has the figures; tests/perf_smoke.rs runs it
briefly so that it keeps working.

Usage: pip install ./clients/python, then
    AUTHZ_BIN=target/release/smart-authz python3 benches/beside_batches.py
"""
import json
import multiprocessing
import os
import queue
import shutil
import subprocess
import sys
import threading
import time

from smart_authz_client import AuthzClient, BatchEntry

BINARY = os.environ.get("AUTHZ_BIN", "target/release/smart-authz")
ENTRIES = int(os.environ.get("ENTRIES", "10000"))
DURATION = float(os.environ.get("DURATION", "10"))
WITH_BATCHES = os.environ.get("BATCH", "1") == "1"
SEARCH = "Observation?patient=123"
# How long the server may take to announce its address, and a batch sender to report.
START_SECONDS = 60
SENDER_SECONDS = 120


def mint() -> str:
    return subprocess.check_output(
        [BINARY, "token", "--scope", "patient/*.rs launch/patient openid", "--patient", "123"],
        text=True,
    ).strip()


def send_batches(target: str, token: str, stop, sent) -> None:
    client = AuthzClient(target, timeout=60)
    entries = [BatchEntry(method="GET", path=f"{SEARCH}&code=c{i}") for i in range(ENTRIES)]
    count = 0
    try:
        while not stop.is_set():
            decided = client.check_batch(token, entries, transaction=False)
            assert decided.allowed and len(decided.entries) == ENTRIES, decided.message
            count += 1
    finally:
        sent.put(count)


def start_server():
    """The server, listening on a port of the kernel's choosing, and the address it
    announces in its "smart-authz serving" log line (as tests/common/spawned.rs reads it)."""
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith("SMART_AUTHZ_")
    }
    environment["SMART_AUTHZ_LOG__FORMAT"] = "json"
    # The development configuration's metrics port may be taken; any free one will do.
    environment["SMART_AUTHZ_TELEMETRY__METRICS_LISTEN"] = "127.0.0.1:0"
    command = [BINARY, "serve", "--listen", "127.0.0.1:0"]
    if shutil.which("taskset"):
        command = ["taskset", "-c", "0", *command]
    server = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in server.stderr], daemon=True).start()
    seen = []
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            if server.poll() is not None:
                break
            continue
        seen.append(line)
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("message") == "smart-authz serving":
            return server, record["listen"]
    server.kill()
    sys.exit("the server did not announce its address:\n" + "".join(seen))


def main() -> None:
    server, target = start_server()
    try:
        token = mint()
        client = AuthzClient(target, timeout=60)
        for _ in range(200):
            client.check(token, "GET", SEARCH)
        # Spawned, not forked: a process forked after grpcio has run may hang.
        processes = multiprocessing.get_context("spawn")
        stop, sent = processes.Event(), processes.Queue()
        senders = []
        if WITH_BATCHES:
            senders = [
                processes.Process(target=send_batches, args=(target, token, stop, sent))
                for _ in range(2)
            ]
            for sender in senders:
                sender.start()
            time.sleep(2)
        spent = []
        end = time.monotonic() + DURATION
        while time.monotonic() < end:
            started = time.perf_counter()
            decided = client.check(token, "GET", SEARCH)
            spent.append(time.perf_counter() - started)
            assert decided.allowed, decided.message
            time.sleep(0.001)
        stop.set()
        batches = 0
        for sender in senders:
            sender.join(timeout=SENDER_SECONDS)
            if sender.is_alive():
                sender.kill()
                sys.exit("a process sending batches did not stop")
            if sender.exitcode != 0:
                sys.exit("a process sending batches failed")
            batches += sent.get(timeout=SENDER_SECONDS)
        spent.sort()

        def ms(fraction: float) -> float:
            return spent[min(len(spent) - 1, int(fraction * len(spent)))] * 1e3

        print(
            f"batches of {ENTRIES} beside: {batches}; {len(spent)} calls: p50 {ms(0.5):.2f} ms, "
            f"p90 {ms(0.9):.2f} ms, p99 {ms(0.99):.2f} ms, max {spent[-1] * 1e3:.2f} ms"
        )
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
