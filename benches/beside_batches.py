#!/usr/bin/env python3
"""The latency of small calls while large batches are decided beside them.

Starts the server (AUTHZ_BIN, the built-in development configuration) pinned to CPU 0,
then for SECONDS sends one cached `CheckAccess` a millisecond and times each, while two
other processes send `BatchCheckAccess` of ENTRIES reads back to back (none with
BATCH=0). Prints the small calls' p50, p90, p99 and maximum. A benchmark, not a test:
docs/performance-log.md, "Batches that hand the runtime back", has the figures.

Usage: pip install ./clients/python, then
    AUTHZ_BIN=target/release/smart-authz python3 benches/beside_batches.py
LISTEN sets the server's address (127.0.0.1:50051); tests/perf_smoke.rs runs it briefly.
"""
import multiprocessing
import os
import subprocess
import time

from smart_authz_client import AuthzClient, BatchEntry

BINARY = os.environ.get("AUTHZ_BIN", "target/release/smart-authz")
ENTRIES = int(os.environ.get("ENTRIES", "10000"))
SECONDS = float(os.environ.get("SECONDS", "10"))
WITH_BATCHES = os.environ.get("BATCH", "1") == "1"
LISTEN = os.environ.get("LISTEN", "127.0.0.1:50051")
SEARCH = "Observation?patient=123"


def mint() -> str:
    return subprocess.check_output(
        [BINARY, "token", "--scope", "patient/*.rs launch/patient openid", "--patient", "123"],
        text=True,
    ).strip()


def send_batches(token: str, stop, sent) -> None:
    client = AuthzClient(LISTEN, timeout=60)
    entries = [BatchEntry(method="GET", path=f"{SEARCH}&code=c{i}") for i in range(ENTRIES)]
    count = 0
    try:
        while not stop.is_set():
            decided = client.check_batch(token, entries, transaction=False)
            assert decided.allowed and len(decided.entries) == ENTRIES, decided.message
            count += 1
    finally:
        sent.put(count)


def main() -> None:
    server = subprocess.Popen(
        ["taskset", "-c", "0", BINARY, "serve", "--listen", LISTEN],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        token = mint()
        client = AuthzClient(LISTEN, timeout=60)
        for _ in range(100):
            if server.poll() is not None:
                raise SystemExit(f"the server stopped (exit status {server.returncode})")
            try:
                client.check(token, "GET", SEARCH)
                break
            except Exception:
                time.sleep(0.1)
        for _ in range(200):
            client.check(token, "GET", SEARCH)
        stop, sent = multiprocessing.Event(), multiprocessing.Queue()
        senders = []
        if WITH_BATCHES:
            senders = [
                multiprocessing.Process(target=send_batches, args=(token, stop, sent))
                for _ in range(2)
            ]
            for sender in senders:
                sender.start()
            time.sleep(2)
        spent = []
        end = time.monotonic() + SECONDS
        while time.monotonic() < end:
            started = time.perf_counter()
            decided = client.check(token, "GET", SEARCH)
            spent.append(time.perf_counter() - started)
            assert decided.allowed, decided.message
            time.sleep(0.001)
        stop.set()
        batches = sum(sent.get() for _ in senders)
        for sender in senders:
            sender.join()
        if any(sender.exitcode != 0 for sender in senders):
            raise SystemExit("a process sending batches failed")
        spent.sort()

        def ms(fraction: float) -> float:
            return spent[min(len(spent) - 1, int(fraction * len(spent)))] * 1e3

        print(
            f"batches of {ENTRIES} beside: {batches}; {len(spent)} calls: p50 {ms(0.5):.2f} ms, "
            f"p90 {ms(0.9):.2f} ms, p99 {ms(0.99):.2f} ms, max {spent[-1] * 1e3:.2f} ms"
        )
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
