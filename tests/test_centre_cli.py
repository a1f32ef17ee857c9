"""``counterguard centre ...`` as an operator runs it: a real centre process on a real broker,
pushes from the command line reaching a gateway, reports, and clear errors for bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from centre_support import SimGateway
from conftest import MqttProbe, wait_until
from counterguard.core import manifest as signed
from counterguard.core import messages

ROOT = Path(__file__).resolve().parent.parent
MULE = "6217000099887766554"


def cli(*args, check_rc: int | None = 0) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "counterguard", "centre", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    if check_rc is not None:
        assert done.returncode == check_rc, done.stderr
    return done


@pytest.fixture
def centre_process(broker, tmp_path):
    db = tmp_path / "centre.db"
    proc = subprocess.Popen([sys.executable, "-m", "counterguard", "centre", "run", "--port", str(broker.port),
                             "--store", str(db), "--web-port", "0", "--workers", "2"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    banner = proc.stdout.readline()
    assert "dashboard http://127.0.0.1:" in banner, proc.stderr.read() if proc.poll() is not None else banner
    yield proc, db
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


def test_a_centre_process_stores_receipts_pushes_and_reports(broker, tmp_path, centre_process):
    proc, db = centre_process
    keys = json.loads(cli("keys", tmp_path / "keys").stdout)
    public = signed.load_public_key(keys["public"])
    wl_key = signed.load_watchlist_key(keys["watchlist"])

    gw = SimGateway(broker.host, broker.port, "gw-0001", subscribe_manifests=True)
    _, alert_id, payload = gw.alert_payload(level="red")
    gw.publish("alert", payload)
    gw.publish("outcome", gw.follow_up("outcome", alert_id, outcome="confirmed_fraud")[1])
    assert gw.wait_for(lambda g: g.receipted >= {1, 2}), "the centre process should receipt both"

    out = cli("push-watchlist", "--port", broker.port, "--store", db, "--signing-key", keys["signing"],
              "--watchlist-key", keys["watchlist"], "--target", "all", "--add", MULE)
    assert json.loads(out.stdout)["version"] == 1
    assert gw.wait_for(lambda g: any(t.endswith("/manifest/watchlist") for t, _, _ in g.downlink))
    topic, envelope, _ = next(m for m in gw.downlink if m[0].endswith("/manifest/watchlist"))
    assert signed.open_envelope(envelope, public, topic=topic)["add"] == [signed.account_hash(wl_key, MULE)]

    gw.heartbeat(outbox_depth=0, watchlist_version=1)
    assert wait_until(lambda: json.loads(cli("rollout", "--store", db, "--json").stdout)[0]["applied"] == ["gw-0001"],
                      20)
    fleet = json.loads(cli("fleet", "--store", db, "--json").stdout)
    assert [(g["gateway_id"], g["presence"]) for g in fleet] == [("gw-0001", "online")]
    accuracy = json.loads(cli("accuracy", "--store", db, "--by", "all", "--json").stdout)
    assert accuracy == [{"group": "all", "level": "red", "alerts": 1, "with_outcome": 1, "justified": 1,
                         "false_alarms": 0, "source": "model", "precision": 1.0}]

    probe = MqttProbe(broker, "watcher")
    probe.subscribe(messages.CENTRE_STATUS)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    # A clean stop says "offline" on the centre's retained status.
    assert probe.wait_for(lambda p: [m["state"] for m in p.received(messages.CENTRE_STATUS)][-1:] == ["offline"])
    probe.close()
    gw.close()


def test_keys_are_never_overwritten(tmp_path):
    cli("keys", tmp_path)
    again = cli("keys", tmp_path, check_rc=2)
    assert "will not overwrite" in again.stderr and "centre-signing.pem" in again.stderr


@pytest.mark.parametrize("args, fragment", [
    (["push-thresholds", "--target", "all", "--amber", "0.3", "--red", "0.8"], "needs the centre signing key"),
    (["push-watchlist", "--target", "all", "--add", MULE, "--signing-key", "{keys}/centre-signing.pem"],
     "hashed with the watchlist key: --watchlist-key FILE"),
    (["push-watchlist", "--target", "all", "--add", "12-34", "--signing-key", "{keys}/centre-signing.pem",
      "--watchlist-key", "{keys}/watchlist.key"], "'12-34' is not an account number"),
    (["push-watchlist", "--target", "all", "--file", "{tmp}/list.txt", "--signing-key", "{keys}/centre-signing.pem",
      "--watchlist-key", "{keys}/watchlist.key"], "list.txt, line 2: 'abc'"),
    (["push-thresholds", "--target", "all", "--amber", "0.8", "--red", "0.3", "--signing-key",
      "{keys}/centre-signing.pem"], "0 < amber < red <= 1"),
    (["fleet", "--config", "{tmp}/centre.toml"], "unknown key dashboard.colour"),
    # The card says 3.0.0: a model pushed as 3.1.0 would be refused by every gateway.
    (["push-model", "--target", "all", "--model-version", "3.1.0", "--signing-key", "{keys}/centre-signing.pem",
      str(ROOT / "models" / "counterguard-v1.tflite")],
     "--model-version 3.1.0 differs from the version 3.0.0 in the model card...counterguard-v1.json"),
    # The broker gives a certificate one connection: two workers on it would throw each other off.
    (["run", "--workers", "2", "--no-dashboard", "--config", "{tmp}/tls.toml"],
     "2 workers on one client certificate...one worker per process, each with its own certificate"),
])
def test_bad_input_is_refused_with_a_reason_naming_it(tmp_path, args, fragment):
    cli("keys", tmp_path / "k")
    (tmp_path / "list.txt").write_text(f"{MULE}\nabc\n")
    (tmp_path / "centre.toml").write_text('[dashboard]\ncolour = "blue"\n')
    (tmp_path / "tls.toml").write_text('[broker]\nca = "ca.crt"\ncert = "centre.crt"\nkey = "centre.key"\n')
    args = [a.format(keys=tmp_path / "k", tmp=tmp_path) for a in args] + ["--store", tmp_path / "c.db"]
    args += ["--create"] if args[0].startswith("push") else []  # a first push; c.db is not there yet
    done = cli(*args, check_rc=2)
    for part in fragment.split("..."):
        assert part in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    if os.path.exists(tmp_path / "c.db") and args[0].startswith("push"):
        assert json.loads(cli("rollout", "--store", tmp_path / "c.db", "--json").stdout) == []


def test_a_second_centre_on_a_taken_dashboard_port_says_which_port(broker, tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = cli("run", "--port", broker.port, "--store", tmp_path / "c.db", "--web-port", port, check_rc=2)
    assert f"127.0.0.1:{port}" in done.stderr and "--no-dashboard" in done.stderr
    assert "Traceback" not in done.stderr
