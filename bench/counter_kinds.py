"""What each kind of counter frame costs the gateway, through the real pipeline (decode, validate,
hash identity fields, lists, score, store in a real SQLite file, reply): a v1 withdrawal, a v2
transfer with the customer's identity and a payee, the customer's answers (an ANS frame and its
final verdict), a SIM card activation at a carrier's outlet and an account opening. Per frame,
one at a time as a teller sends them; p50 and p99. Results go in docs/benchmarks.md ("Counter
frames by kind").

    .venv/bin/python bench/counter_kinds.py [--frames 2000]
"""

from __future__ import annotations

import argparse
import platform
import secrets
import statistics
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from counterguard.core import wire
from counterguard.core.clock import Clock
from counterguard.core.identity import resident_check_digit
from counterguard.core.lists import RESTRICTED, WARNED
from counterguard.gateway.counter.pipeline import Pipeline
from counterguard.gateway.scoring.assessor import Assessor
from counterguard.gateway.scoring.model import FraudModel, default_model_path
from counterguard.gateway.scoring.person_lists import PersonLists
from counterguard.gateway.scoring.watchlist import Watchlist
from counterguard.gateway.store.db import Store

CST = timezone(timedelta(hours=8))


def person(n: int) -> str:
    first = f"110105{1950 + n % 50:04d}0101{n % 1000:03d}"
    return first + resident_check_digit(first)


def pipelines(tmp: Path, list_entries: int) -> dict:
    model = FraudModel.load(default_model_path())
    out = {}
    for sector in ("bank", "carrier"):
        store = Store(tmp / f"{sector}.db", synchronous="FULL")
        watchlist = Watchlist(store, bytes(range(32)), key_version=1)
        persons = PersonLists(store)
        # Lists of a realistic size, so a lookup searches a real index, not an empty one.
        until = (date.today() + timedelta(days=90)).isoformat()
        for kind, label in ((WARNED, "investment"), (RESTRICTED, "police")):
            persons.apply(kind, {"version": 1, "full": True,
                                 "add": [[secrets.token_hex(32), label, date.today().isoformat(), until]
                                         for _ in range(list_entries)]})
        out[sector] = Pipeline(Assessor(store, watchlist, model, model.thresholds, persons=persons),
                               gateway_id=f"bench-{sector}", clock=Clock(assume_synced=True), sector=sector)
    return out


def frames(kind: str, n: int) -> list[tuple[str, dict]]:
    now = datetime.now(CST).isoformat(timespec="seconds")
    base = {"event_id": f"{kind}-{n}", "ts": now, "counter": 1 + n % 4}
    if kind == "v1 withdrawal":
        return [("EVT", {**base, "kind": "cash_withdrawal", "account": f"62220202{n:011d}", "amount": 3000,
                         "customer_age": 40, "balance_before": 30000, "purpose": "daily"})]
    if kind == "v2 transfer with identity":
        return [("EVT", {**base, "kind": "transfer_out", "account": f"62220202{n:011d}", "amount": 20000,
                         "customer_id": person(n), "customer_phone": f"138{n:08d}",
                         "payee_account": f"62284800{n:011d}", "payee_new": True})]
    if kind == "answers (ANS, final verdict)":
        event = {**base, "kind": "cash_withdrawal", "account": f"62220202{n:011d}", "amount": 12000,
                 "customer_age": 70, "purpose": "investment"}
        return [("EVT", event), ("ANS", {"event_id": event["event_id"],
                                         "answers": {"told_to_by_caller": "yes", "knows_payee_in_person": "no"}})]
    if kind == "sim_activation":
        return [("EVT", {**base, "kind": "sim_activation", "customer_id": person(n), "customer_age": 19 + n % 60,
                         "sims_held": n % 4, "sims_requested": 1 + n % 5, "for_self": n % 3 != 0,
                         "accompanied": n % 7 == 0})]
    return [("EVT", {**base, "kind": "account_opening", "customer_id": person(n), "customer_age": 30,
                     "accounts_held": n % 3, "accounts_opened_90d": n % 2, "for_self": True, "purpose": "salary"})]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=2000, help="frames timed per kind")
    ap.add_argument("--list-entries", type=int, default=100_000, help="entries in each list of persons")
    args = ap.parse_args()
    kinds = {"v1 withdrawal": "bank", "v2 transfer with identity": "bank", "answers (ANS, final verdict)": "bank",
             "sim_activation": "carrier", "account_opening": "bank"}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        lines = pipelines(Path(tmp), args.list_entries)
        for kind, sector in kinds.items():
            pipeline, timings, seq = lines[sector], [], 0
            for n in range(args.frames):
                for type_, body in frames(kind, n):
                    seq += 1
                    [item] = wire.FrameDecoder().feed(wire.encode_frame(type_, seq, body))
                    started = time.perf_counter()
                    reply = pipeline.process([item])
                    took = time.perf_counter() - started
                    assert reply.replies.startswith(b"$ACK"), reply.replies[:200]
                    if type_ == "ANS" or kind != "answers (ANS, final verdict)":
                        timings.append(took)
            timings.sort()
            rows.append((kind, sector, len(timings), statistics.median(timings) * 1e3,
                         timings[min(len(timings) - 1, int(0.99 * len(timings)))] * 1e3))
    print(f"Machine: {platform.machine()}, Python {platform.python_version()}; each frame scored, stored "
          f"(synchronous=FULL) and answered on its own; lists of {args.list_entries:,} persons each.")
    print()
    print("| frame | gateway | frames | p50 | p99 |")
    print("|---|---|---:|---:|---:|")
    for kind, sector, n, p50, p99 in rows:
        print(f"| {kind} | {sector} | {n:,} | {p50:.2f} ms | {p99:.2f} ms |")


if __name__ == "__main__":
    main()
