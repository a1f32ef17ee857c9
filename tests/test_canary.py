"""Canary and rollback: a challenger promoted to a deterministic sample of gateways goes back by itself
when their alert rate leaves the band. The end-to-end test runs the real thing: two gateways on ptys,
a real mosquitto, ``counterguard centre run`` as its own process with its canary guard, and a
deliberately broken challenger (an int8 TFLite model that scores every customer red)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pytest

from conftest import wait_until
from counterguard.centre import canary
from counterguard.centre.downlink import Downlink
from counterguard.centre.schema import Record
from counterguard.centre.store import open_store
from counterguard.core import manifest as m
from counterguard.gateway.scoring.model import default_model_path


def test_the_canary_sample_is_deterministic_and_at_least_one_gateway():
    fleet = [f"gw-{n:04d}" for n in range(200)]
    first = canary.sample(fleet, 10, "fleet-20261204")
    assert len(first) == 20 and first == canary.sample(list(reversed(fleet)), 10, "fleet-20261204")
    assert first != canary.sample(fleet, 10, "fleet-20261205")  # another challenger, another sample
    assert set(canary.sample(fleet, 20, "fleet-20261204")) >= set(first)  # widening keeps the first group
    assert len(canary.sample(fleet[:3], 1, "x")) == 1
    with pytest.raises(canary.CanaryError, match="above 0 and at most 100"):
        canary.sample(fleet, 0, "x")


def _events(gateway_id: str, n: int, *, level: str, model: str, prefix: str) -> Record:
    rows = [{"event_id": f"{prefix}-{i}", "counter": 1, "kind": "cash_withdrawal", "amount": 500.0,
             "ts": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()), "account_hash": None, "level": level,
             "score": 0.99 if level == "red" else 0.01, "reasons": [], "model_version": model, "watchlist_version": 1,
             "features": None, "shadow_score": None, "shadow_version": None, "decided_at": "2026-12-04T00:00:00Z"}
            for i in range(n)]
    return Record("events", "610100", "b0231", gateway_id,
                  {"type": "events", "gateway_id": gateway_id, "seq": 1, "features_version": 2, "events": rows})


def test_a_canary_leaves_its_band_only_on_its_own_gateways_and_the_challengers_verdicts(tmp_path):
    store = open_store(tmp_path / "centre.db")
    band = canary.Band(alert_rate_max=0.05, min_events=20)
    store.start_canary(challenger="fleet-x", challenger_manifest=1, previous="2.0.0", previous_manifest=None,
                       gateways=["gw-a"], percent=50, started_at=time.time() - 60)
    store.ingest([_events("gw-b", 50, level="red", model="fleet-x", prefix="b")])        # not in the group
    store.ingest([_events("gw-a", 50, level="red", model="2.0.0", prefix="a-old")])      # the old model's reds
    store.ingest([_events("gw-a", 10, level="red", model="fleet-x", prefix="a-few")])    # too few to judge
    assert canary.check(store, band, now=time.time()) == []
    store.ingest([_events("gw-a", 30, level="green", model="fleet-x", prefix="a-more")])
    [(row, reason)] = canary.check(store, band, now=time.time())
    assert row["challenger"] == "fleet-x" and reason.startswith("gw-a: alert rate 25.0% over 40 events")
    store.close()


def broken_challenger(folder) -> tuple:
    """An int8 model that scores every customer about 0.95 (red), with a card the gateway accepts."""
    pytest.importorskip("tensorflow", reason="building the broken challenger needs tensorflow-cpu")
    import keras

    from counterguard.models.train import to_int8_tflite

    card = json.loads(default_model_path().with_suffix(".json").read_text())
    model = keras.Sequential([keras.Input((len(card["feature_names"]),)),
                              keras.layers.Dense(1, kernel_initializer="zeros", bias_initializer=keras.initializers.Constant(3.0)),
                              keras.layers.Activation("sigmoid")])
    calibration = np.random.default_rng(1).normal(size=(512, len(card["feature_names"]))).astype(np.float32)
    data = to_int8_tflite(model, calibration)
    import hashlib

    card = {**card, "version": "broken-1", "sha256": hashlib.sha256(data).hexdigest()}
    (folder / "broken.tflite").write_bytes(data)
    (folder / "broken.json").write_text(json.dumps(card))
    return folder / "broken.tflite", card


def test_a_broken_challenger_is_rolled_back_on_its_canary_group_by_the_running_centre(tmp_path, broker):
    from gpiozero.pins.mock import MockFactory

    from counterguard.core.manifest import save_private_key, save_public_key
    from counterguard.gateway.config import DownlinkSettings, GatewaySettings
    from counterguard.gateway.counter.terminal import TellerTerminal
    from counterguard.gateway.ops.app import Gateway
    from harness import event, gateway_config, pty_pair

    broken, _ = broken_challenger(tmp_path)
    key = m.generate_signing_key()
    save_private_key(key, tmp_path / "centre-signing.pem")
    save_public_key(key, tmp_path / "centre-public.pem")
    (tmp_path / "centre.toml").write_text(
        f'[broker]\nhost = "127.0.0.1"\nport = {broker.port}\n[store]\nurl = "{tmp_path / "centre.db"}"\n'
        f'[signing]\nkey = "{tmp_path / "centre-signing.pem"}"\n'
        "[canary]\nalert_rate_max = 0.5\nmin_events = 5\ncheck_every_s = 1\n")
    centre_run = subprocess.Popen([sys.executable, "-m", "counterguard", "centre", "run", "--config",
                                   str(tmp_path / "centre.toml"), "--no-dashboard"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    gateways, terminals, ptys = {}, {}, []
    try:
        for name in ("gw-canary-a", "gw-canary-b"):
            folder = tmp_path / name
            folder.mkdir()
            pair = pty_pair()
            master, path = pair.__enter__()
            ptys.append(pair)
            cfg = replace(gateway_config(folder, broker_port=broker.port, serial_path=path),
                          gateway=GatewaySettings(id=name, region="610100", branch="b0231", data_dir=str(folder)),
                          downlink=DownlinkSettings(centre_public_key=str(tmp_path / "centre-public.pem")))
            gateways[name] = Gateway(cfg, pin_factory=MockFactory()).start()  # each its own counter-side pins
            terminals[name] = TellerTerminal(master, timeout=10)
        reader = open_store(tmp_path / "centre.db")
        assert wait_until(lambda: len(reader.gateways()) == 2, 30), "the centre never heard from both gateways"
        bundled = gateways["gw-canary-a"].pipeline.assessor.model.version

        def push(build):
            with open_store(tmp_path / "centre.db") as store:
                pushed = build(Downlink(store, key))
            from counterguard.centre.downlink import publish_retained
            publish_retained(broker.host, broker.port, [(p.topic, p.envelope) for p in
                                                        (pushed if isinstance(pushed, list) else [pushed])])
            return pushed

        push(lambda d: d.push_model("all", broken, shadow=True))
        assert wait_until(lambda: all(getattr(g.pipeline.assessor.shadow, "version", None) == "broken-1"
                                      for g in gateways.values()), 20)
        # Not judged: no labelled event carries its score yet, and promoting is refused saying so ...
        refused = subprocess.run([sys.executable, "-m", "counterguard", "centre", "promote", "--config",
                                  str(tmp_path / "centre.toml"), "--canary", "50"], capture_output=True, text=True,
                                 timeout=60)
        assert refused.returncode != 0 and "shadow is not judged yet" in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
        # ... unless someone takes it on themselves, as this rehearsal of the rollback does.
        done = subprocess.run([sys.executable, "-m", "counterguard", "centre", "promote", "--config",
                               str(tmp_path / "centre.toml"), "--canary", "50", "--without-judgement",
                               "rehearsing the rollback"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert "promoting without a judged shadow, because: rehearsing the rollback" in done.stderr
        with open_store(tmp_path / "centre.db") as store:
            [running] = store.canaries(active_only=True)
        [group] = running["gateways"]
        other = next(n for n in gateways if n != group)
        assert wait_until(lambda: gateways[group].pipeline.assessor.model.version == "broken-1", 20)

        # The canary gateway now holds every customer: its reds stay open, and the rollback must not wait.
        first_red = None
        t0 = time.monotonic()
        while gateways[group].pipeline.assessor.model.version == "broken-1" and time.monotonic() - t0 < 150:
            reply = terminals[group].send(event(amount=300))
            if reply.body["level"] == "red" and first_red is None:
                first_red = time.monotonic()
            terminals[other].send(event(amount=300))
            time.sleep(0.2)
        back = gateways[group].pipeline.assessor.model.version
        assert first_red is not None, "the broken challenger never decided a verdict"
        assert back == bundled, f"still on {back} {time.monotonic() - first_red:.0f} s after its first red"
        took = time.monotonic() - first_red
        assert took < 120, f"rolled back {took:.0f} s after the first broken verdict"
        assert gateways[other].pipeline.assessor.model.version == bundled  # never part of the canary
        assert terminals[group].send(event(amount=300)).body["level"] == "green"  # the counter is itself again
        assert gateways[group].store.open_alerts("red"), "the reds the broken model raised stay for the supervisor"
        with open_store(tmp_path / "centre.db") as store:
            [ended] = store.canaries()
        assert ended["state"] == "rolled_back" and ended["reason"].startswith(f"{group}: alert rate")
        print(f"rolled back {took:.1f} s after the first broken verdict")
    finally:
        for g in gateways.values():
            g.stop()
        for pair in ptys:
            pair.__exit__(None, None, None)
        centre_run.terminate()
        out, err = centre_run.communicate(timeout=30)
    assert "ROLLBACK of challenger broken-1" in err
