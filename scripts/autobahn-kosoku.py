#!/usr/bin/env python3
"""Runs the Autobahn TestSuite's 517 cases against a server with kosoku (PyPI).

    autobahn-kosoku.py URL REPORT_DIR

scripts/autobahn runs this, inside the venv it made, where ../shared/autobahn
is missing (or WSHUB_AUTOBAHN_RUNNER=kosoku). kosoku runs Autobahn's own
case files from a Rust runner; this writes the same index.json as wstest, so
scripts/autobahn compares it with the same autobahn/expected-results.json.

Prints the shared harness's summary, ending with "autobahn: N passed, M
failed". Exit 0: no case failed; 1: some failed; 2: the runner itself broke.
"""

import asyncio
import collections
import os
import sys
import time

from kosoku import FailureError, run_fuzzingclient
from kosoku._report import write_reports
from kosoku.cases import CASES

PASSING = ("OK", "NON-STRICT", "INFORMATIONAL")


def give_compression_cases_bytes():
    """kosoku 0.1.0 hands a case a message that arrived compressed (RSV1 set)
    as bytes, but one that arrived uncompressed as str (its py2 convention).
    The 12.* and 13.* cases feed what they receive to hashlib, which takes
    bytes only, so every uncompressed echo ends the case in ERROR ("Strings
    must be encoded before hashing"). RFC 7692 lets a server send any message
    uncompressed, and wshub does for payloads under 32 bytes, payloads that
    deflate would not shrink, and payloads longer than the window the client
    asked for (server_max_window_bits=9 in 13.3, 13.5, 13.7): 77 cases. The
    shared harness normalizes received payloads to bytes for the same reason;
    this gives them back the bytes that were on the wire (text is valid UTF-8
    there, binary is latin-1, one code point a byte). Nothing else changes:
    the cases still check type, length and SHA-1 of every echo."""
    patched = 0
    for case_id, cls in CASES.items():
        if case_id.split(".")[0] not in ("12", "13") or "onMessage" not in vars(cls):
            continue
        original = vars(cls)["onMessage"]

        def on_message(self, msg, binary, _original=original):
            if isinstance(msg, str):
                msg = msg.encode("latin-1" if binary else "utf-8")
            return _original(self, msg, binary)

        cls.onMessage = on_message
        patched += 1
    if patched != 216:
        raise SystemExit(f"autobahn: harness error: expected 216 compression cases to adapt, found {patched}")


async def run(url, timeout):
    try:
        return await asyncio.wait_for(run_fuzzingclient(url), timeout)
    except FailureError as failure:
        return failure.results


def main():
    url, report = sys.argv[1], sys.argv[2]
    timeout = float(os.environ.get("WSHUB_AUTOBAHN_TIMEOUT", "3600"))
    give_compression_cases_bytes()
    started = time.monotonic()
    try:
        results = asyncio.run(run(url, timeout))
    except asyncio.TimeoutError:
        print(f"autobahn: harness error: kosoku did not finish within {timeout:.0f} s")
        return 2
    except Exception as error:  # the runner itself failed (no server, a crash)
        print(f"autobahn: harness error: kosoku: {type(error).__name__}: {error}")
        return 2
    print(f"autobahn: wall time {time.monotonic() - started:.0f}s")
    if not results:
        print("autobahn: harness error: kosoku returned no results")
        return 2
    write_reports(results, report)

    counts = collections.Counter(r.behavior.value for r in results)
    agent = results[0].agent
    print(f"autobahn summary: agent {agent}, {len(results)} case(s) with a result, {len(CASES)} planned")
    for verdict in ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED", "ERROR"):
        print(f"  {verdict:<15} {counts.pop(verdict, 0):>4}")
    for verdict, n in sorted(counts.items()):
        print(f"  {verdict:<15} {n:>4}")
    failed = [r for r in results if r.behavior.value not in PASSING + ("UNIMPLEMENTED",)]
    missing = sorted(set(CASES) - {r.case_id for r in results}, key=lambda c: [int(p) for p in c.split(".")])
    for r in failed[:40]:
        print(f"  {r.case_id}: {r.behavior.value}/{r.behavior_close.value}: {r.result}")
    if len(failed) > 40:
        print(f"  ... and {len(failed) - 40} more")
    if missing:
        print(f"cases without a result: {len(missing)}: {' '.join(missing[:40])}{' ...' if len(missing) > 40 else ''}")
    unclean = [r.case_id for r in results if r.behavior.value in PASSING and r.behavior_close.value not in PASSING]
    if unclean:
        print(f"note: passing cases whose close was not OK: {' '.join(unclean)}")
    print(f"report: {report}/index.html")
    passed = sum(1 for r in results if r.behavior.value in PASSING)
    print(f"autobahn: {passed} passed, {len(failed) + len(missing)} failed")
    return 1 if failed or missing else 0


if __name__ == "__main__":
    code = main()
    # kosoku 0.1.0 can leave a tokio worker that, during interpreter
    # shutdown, blocks on the GIL; Python then pthread_exit()s that thread
    # through Rust frames and the process aborts (SIGABRT, exit 134, about one
    # run in five here, after all results were out). The reports are written:
    # leave without finalizing.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
