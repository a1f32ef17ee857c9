"""Events for learning, centre side: how many uploaded events one centre worker stores per second.

Real parts: batches built by the gateway's own code (gateway/link/upload.py) from a real gateway
store filled through the real scoring path (bundled TFLite model), compressed as on the wire.

1. The worker's writer alone: inflate + schema check of every event + one-transaction store, per
   batch of 500 events, into SQLite and (with --postgres) PostgreSQL partitioned by day.
2. Through the broker: a gateway-like publisher sends the batches at QoS 1 to a private mosquitto,
   one IngestWorker stores and receipts them; timed from the first publish to the last receipt.

    .venv/bin/python bench/learning.py [--events 100000] [--batch 500] [--postgres]

Prints a Markdown section for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import threading
import time
import zlib
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from machine_info import cpu_name  # noqa: E402

GW, REGION, BRANCH = "gw-bench-01", "610100", "b0231"


def gateway_batches(tmp: Path, events: int, batch: int) -> list[bytes]:
    """``events`` scored events as the gateway uploads them: a list of wire payloads."""
    from counterguard.core.clock import Clock
    from counterguard.core.events import parse_event
    from counterguard.gateway.link.upload import EventUpload
    from counterguard.gateway.scoring.assessor import Assessor
    from counterguard.gateway.scoring.model import FraudModel, default_model_path
    from counterguard.gateway.scoring.watchlist import Watchlist
    from counterguard.gateway.store.db import Store
    from harness import event, intercept

    model = FraudModel.load(default_model_path())
    clock = Clock(assume_synced=True)
    with Store(tmp / "gateway.db", synchronous="NORMAL") as store:
        watchlist = Watchlist(store)
        assessor = Assessor(store, watchlist, model, model.thresholds)
        with store.batch():
            for i in range(events):
                body = intercept(counter=1 + i % 4, event_id=f"b-{i}") if i % 50 == 0 else \
                    event(counter=1 + i % 4, amount=200 + i % 9000, account=f"62220202{i % 5000:011d}",
                          event_id=f"b-{i}")
                ev = parse_event(body)
                a = assessor.assessment(ev)
                assessor.record(ev, b"{}", f"sha-{i}", a.verdict, clock.now(), GW, assessment=a)
        store.receipt([r.seq for r in store.outbox_pending(events, republish_after_s=0)])  # the alerts went ahead
        upload = EventUpload(store, watchlist.hash, gateway_id=GW, batch_events=batch)
        out = []
        while (seq := upload.queue_next()) is not None:
            [row] = store.outbox_pending(1, republish_after_s=0)
            assert row.seq == seq and row.kind == "events"
            out.append(upload.wire(row.payload, seq=seq, region=REGION, branch=BRANCH, historical=False))
            store.receipt([seq])
        return out


def writer_alone(url: str, payloads: list[bytes]) -> float:
    from counterguard.centre import schema
    from counterguard.centre.store import open_store

    topic = f"counterguard/v1/{REGION}/{BRANCH}/{GW}/events"
    with open_store(url) as store:
        t0 = time.perf_counter()
        stored = 0
        for p in payloads:
            stored += store.ingest([schema.check(topic, p)]).events
        elapsed = time.perf_counter() - t0
    return stored / elapsed


def events_on_disk(url: str) -> int:
    """Bytes the stored events take: the SQLite file, or on PostgreSQL the events partitions with
    their indexes and TOAST."""
    from counterguard.centre.store import open_store

    if not url.startswith("postgresql"):
        return sum(Path(url + suffix).stat().st_size for suffix in ("", "-wal") if Path(url + suffix).exists())
    with open_store(url) as store:
        rows = store._query("SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0) + "
                            "pg_total_relation_size('events') AS size FROM pg_inherits "
                            "WHERE inhparent = 'events'::regclass", [])
    return int(rows[0]["size"])


def through_broker(url: str, payloads: list[bytes], port: int) -> tuple[float, int]:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from counterguard.centre.ingest import IngestWorker
    from counterguard.centre.store import open_store
    from counterguard.core import messages

    root = messages.topic_root(REGION, BRANCH, GW)
    receipted: set[int] = set()
    done = threading.Event()

    def on_message(client, userdata, msg):
        receipted.update(messages.parse_receipt(msg.payload))
        if len(receipted) >= len(payloads):
            done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=GW)
    client.on_message = on_message
    client.max_inflight_messages_set(4)  # the gateway keeps at most a few batches open
    client.connect("127.0.0.1", port)
    client.subscribe(f"{root}/receipt", qos=1)
    client.loop_start()
    time.sleep(0.3)
    with IngestWorker(open_store(url), host="127.0.0.1", port=port) as worker:
        t0 = time.perf_counter()
        for p in payloads:
            client.publish(f"{root}/events", p, qos=1)
        done.wait(600)
        elapsed = time.perf_counter() - t0
        stored = worker.stats.events
    client.loop_stop()
    client.disconnect()
    return stored / elapsed, stored


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--postgres", action="store_true", help="also measure PostgreSQL (partitioned by day)")
    args = parser.parse_args()

    from counterguard.gateway.link.broker import PrivateBroker

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        payloads = gateway_batches(tmp, args.events, args.batch)
        built = time.perf_counter() - t0
        wire = sum(len(p) for p in payloads)
        inflated = sum(len(zlib.decompress(p)) for p in payloads)
        rows.append((f"{args.events:,} scored events as {len(payloads)} upload batches of {args.batch}",
                     f"{wire / args.events:.0f} bytes an event on the wire (zlib; {inflated / args.events:.0f} "
                     "as JSON)", "-"))
        stores = [("SQLite", str(tmp / "centre-a.db"), str(tmp / "centre-b.db"))]
        server = None
        if args.postgres:
            from centre_support import PostgresServer

            server = PostgresServer().start()
            stores.append(("PostgreSQL 15 (local, fsync off), partitioned by day",
                           server.create_database("bench_a"), server.create_database("bench_b")))
        try:
            for name, url_a, url_b in stores:
                rate = writer_alone(url_a, payloads)
                rows.append((f"{name}: one worker's writer alone (inflate, check every event, one transaction a "
                             "batch)", f"{rate:,.0f} events/s", "≥ 20,000 events/s"))
                size = events_on_disk(url_a)
                rows.append((f"{name}: the stored events on disk (table, indexes)",
                             f"{size / args.events:,.0f} bytes an event ({size / args.events * 1e6 / 2**30:.2f} GiB "
                             "a million)", "-"))
                with PrivateBroker() as broker:
                    rate, stored = through_broker(url_b, payloads, broker.port)
                rows.append((f"{name}: through mosquitto, one worker, stored and receipted",
                             f"{rate:,.0f} events/s ({stored:,} of {args.events:,} stored)", "≥ 20,000 events/s"))
        finally:
            if server is not None:
                server.stop()

    print(f"Machine: {platform.machine()}, {cpu_name()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}; {date.today().isoformat()}. Batches built in {built:.1f} s.\n")
    print("| measure | result | goal |\n|---|---|---|")
    for name, result, goal in rows:
        print(f"| {name} | {result} | {goal} |")


if __name__ == "__main__":
    main()
