"""What the security parts cost: keyed-hash watchlist lookups on the hot path, manifest checks, and
making gateway bundles. Results go in docs/benchmarks.md.

    .venv/bin/python bench/security.py [--entries 100000] [--lookups 100000] [--bundles 20]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

from counterguard.core import manifest as m
from counterguard.gateway.link.downlink import Downlink
from counterguard.gateway.scoring.model import FraudModel, default_model_path
from counterguard.gateway.scoring.assessor import Assessor
from counterguard.gateway.store.db import Store
from counterguard.gateway.scoring.watchlist import Watchlist
from counterguard.provisioning.bundle import CentreFiles, batch
from counterguard.provisioning.ca import CertificateAuthority


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def us(v):
    return f"{v * 1e6:.1f} µs"


def ms(v):
    return f"{v * 1e3:.1f} ms"


def timed(fn, n):
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--lookups", type=int, default=100_000)
    ap.add_argument("--bundles", type=int, default=20)
    args = ap.parse_args()
    rng = random.Random(7)
    rows = []
    key = m.generate_signing_key()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        with Store(tmp / "g.db", synchronous="NORMAL") as store:
            wkey = m.generate_watchlist_key()
            wl = Watchlist(store, wkey, key_version=1)
            accounts = [str(rng.randrange(10**18, 10**19)) for _ in range(args.entries)]
            hashes = [m.account_hash(wkey, a) for a in accounts]
            body = {"kind": "watchlist", "version": 1, "issued_at": "2026-11-25T09:00:00Z", "target": "all",
                    "full": True, "add": hashes, "hash": "hmac-sha256", "key_version": 1}
            t = time.perf_counter()
            envelope = m.sign_envelope(body, key)
            sign_s = time.perf_counter() - t
            t = time.perf_counter()
            opened = m.open_envelope(envelope, key.public_key(), topic="counterguard/v1/all/manifest/watchlist")
            verify_s = time.perf_counter() - t
            t = time.perf_counter()
            wl.apply(opened)
            apply_s = time.perf_counter() - t
            rows.append((f"sign a full watchlist of {args.entries:,} hashes ({len(envelope) / 2**20:.1f} MiB envelope)",
                         ms(sign_s)))
            rows.append(("verify + check it on the gateway (`open_envelope`)", ms(verify_s)))
            rows.append(("apply it (one SQLite transaction, then swap)", ms(apply_s)))
            probes = [rng.choice(accounts) if rng.random() < 0.01 else str(rng.randrange(10**18, 10**19))
                      for _ in range(args.lookups)]
            it = iter(probes * 2)
            hot = timed(lambda: wl.contains(next(it)), args.lookups)
            plain = frozenset(accounts)
            it2 = iter(probes * 2)
            base = timed(lambda: next(it2) in plain, args.lookups)
            rows.append((f"`Watchlist.contains` (HMAC-SHA256 + set lookup), {args.lookups:,} calls",
                         f"p50 {us(pct(hot, .5))}, p99 {us(pct(hot, .99))}"))
            rows.append(("same lookup on plain account numbers (before keyed hashes), for comparison",
                         f"p50 {us(pct(base, .5))}, p99 {us(pct(base, .99))}"))

            path = default_model_path()
            model = FraudModel.load(path)
            card = json.loads(path.with_suffix(".json").read_text())
            assessor = Assessor(store, wl, model, model.thresholds)
            downlink = Downlink(store, assessor, public_key=key.public_key(), root="counterguard/v1/r/b/gw-1",
                                region="r", state_dir=tmp / "downlink")
            times = []
            for v in range(1, 11):
                body = m.model_manifest(path.read_bytes(), {**card, "version": f"bench-{v}"}, version=v,
                                        model_version=f"bench-{v}", target="all", issued_at="2026-11-25T09:00:00Z")
                env = m.sign_envelope(body, key)
                t = time.perf_counter()
                assert downlink.handle("counterguard/v1/all/manifest/model", env) == "applied"
                times.append(time.perf_counter() - t)
            rows.append((f"model manifest ({path.stat().st_size:,}-byte model): verify, sha256, write + fsync, load, "
                         "swap; median of 10", ms(statistics.median(times))))

        ca = CertificateAuthority.create(tmp / "ca")
        m.save_public_key(key, tmp / "centre-public.pem")
        m.save_watchlist_key(wkey, tmp / "watchlist.key")
        csv = ["gateway_id,region,branch,counters"] + [f"gw-{i:04d},r1,b{i:04d},4" for i in range(args.bundles)]
        (tmp / "branches.csv").write_text("\n".join(csv) + "\n")
        t = time.perf_counter()
        done, problems = batch(ca, tmp / "branches.csv", tmp / "out", CentreFiles(tmp / "centre-public.pem",
                                                                                   tmp / "watchlist.key"),
                               progress_stream=open("/dev/null", "w"))
        total = time.perf_counter() - t
        assert not problems and len(done) == args.bundles
        rows.append((f"`provision batch`, {args.bundles} gateways (P-256 key, certificate, bundle, CA-key scan)",
                     f"{ms(total / args.bundles)} per gateway ({total:.1f} s)"))

    print(f"Measured {date.today()} on {platform.machine()}, Python {platform.python_version()}, "
          f"`bench/security.py --entries {args.entries} --lookups {args.lookups} --bundles {args.bundles}`.\n")
    print("| measure | result |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
