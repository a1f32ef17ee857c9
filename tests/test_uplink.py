"""The uplink to the centre over a real mosquitto: alerts reach the centre once, survive an outage,
and the centre's receipts, status and watchlist updates are honoured."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from counterguard.centre.receiver import Receiver
from counterguard.core import messages
from counterguard.core.clock import Clock, Stamp
from counterguard.core.decision import Verdict
from counterguard.core.events import parse_event
from counterguard.gateway.store.db import Store
from counterguard.gateway.link.uplink import Backoff, Uplink
from counterguard.gateway.scoring.watchlist import Watchlist

from conftest import wait_until
from fault_support import kill_broker

GW, REGION, BRANCH = "gw-test-01", "610100", "b0231"
ROOT = f"counterguard/v1/{REGION}/{BRANCH}/{GW}"
MULE = "6217000099887766554"
REPO = Path(__file__).resolve().parent.parent


def raise_alert(store, n: int, *, level: str = "red", wall: float | None = None):
    ev = parse_event({"event_id": f"ev-{n}", "ts": "2024-05-06T09:30:00+08:00", "counter": 1 + n % 4,
                      "kind": "cash_withdrawal", "account": "6222020200000000101", "amount": 50000})
    v = Verdict(ev.event_id, level, 0.93, ("large_cash",), "Hold: 50,000 yuan or more - call supervisor", ev.counter)
    return store.record_verdict(ev, b"{}", f"sha-{n}", v, Stamp(wall or time.time(), time.monotonic(), True),
                                model_version="m-1", watchlist_version=0, gateway_id=GW)


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "gateway.db", synchronous="NORMAL") as s:
        yield s


@pytest.fixture
def make_uplink(store, broker):
    made = []

    def make(**kw):
        options = dict(host=broker.host, port=broker.port, gateway_id=GW, region=REGION, branch=BRANCH,
                       heartbeat_s=1.0, republish_after_s=2.0, backoff_min=0.1, backoff_max=0.5,
                       clock=Clock(assume_synced=True))
        options.update(kw)
        up = Uplink(store, Watchlist(store), **options)
        made.append(up)
        return up.start()

    yield make
    for up in made:
        up.stop()


def test_alerts_reach_the_centre_and_its_receipts_close_the_outbox(store, centre, make_uplink):
    uplink = make_uplink()
    raised = [raise_alert(store, n) for n in range(20)]
    uplink.wake()
    assert centre.wait_for(lambda r: len(r.alerts) == 20 and store.outbox_depth() == 0, timeout=10)
    got = centre.alerts
    assert [a["seq"] for a in got] == [a.seq for a in raised]
    first = got[0]
    assert first["alert_id"] == raised[0].alert_id and first["gateway_id"] == GW
    assert (first["region"], first["branch"]) == (REGION, BRANCH)
    assert first["historical"] is False  # sent as it happened
    assert uplink.stats.receipted == 20


def test_an_acknowledgement_follows_its_alert_to_the_centre(store, centre, make_uplink):
    make_uplink()
    alert = raise_alert(store, 1)
    ack = store.acknowledge(by="supervisor", via="button", stamp=Clock(assume_synced=True).now())
    assert centre.wait_for(lambda r: len(r.acks) == 1 and store.outbox_depth() == 0, timeout=10)
    body = centre.acks[0]
    assert body["alert_id"] == alert.alert_id and body["seq"] == ack.seq and body["via"] == "button"


def test_broker_down_mid_stream_then_every_alert_arrives_exactly_once(store, broker, centre, make_uplink):
    uplink = make_uplink()
    for n in range(50):
        raise_alert(store, n)
    uplink.wake()
    assert centre.wait_for(lambda r: len(r.alerts) >= 10, timeout=10)
    broker.stop()  # the centre's broker goes away mid-stream ...
    for n in range(50, 300):  # ... while the counters keep raising alerts
        raise_alert(store, n)
        uplink.wake()
    time.sleep(2)
    assert not uplink.connected
    broker.start()  # same port
    assert centre.wait_for(lambda r: len(r.alerts) >= 300 and store.outbox_depth() == 0, timeout=15), \
        f"centre has {len(centre.alerts)} alerts, outbox {store.outbox_depth()}"
    seqs = [a["seq"] for a in centre.alerts]
    assert len(seqs) == len(set(seqs)) == 300  # each once: the centre de-duplicates on (gateway, seq)
    assert seqs == sorted(seqs)  # drained in order
    assert uplink.stats.sessions >= 2


def test_a_burst_of_alerts_reaches_the_centre_exactly_once_though_the_broker_is_killed_mid_burst(
        store, broker, centre, make_uplink):
    """A mule ring working every counter: 1,500 alerts at once, many in flight together; the broker
    dies (SIGKILL, no goodbye) with part of the burst unreceipted while the counters raise 500 more."""
    uplink = make_uplink(republish_after_s=600)  # no help from the resend timer: reconnects alone must do it
    raised = [raise_alert(store, n) for n in range(1500)]
    uplink.wake()
    assert centre.wait_for(lambda r: len(r.alerts) >= 200, timeout=15), "nothing reached the centre"
    kill_broker(broker)
    assert len(centre.alerts) < 1500  # the kill really fell inside the burst
    raised += [raise_alert(store, n) for n in range(1500, 2000)]
    uplink.wake()
    assert wait_until(lambda: not uplink.connected, 10)
    broker.start()  # same port, nothing kept from before
    assert centre.wait_for(lambda r: len(r.alerts) >= 2000 and store.outbox_depth() == 0, timeout=60), \
        f"centre has {len(centre.alerts)} alerts, outbox {store.outbox_depth()}"
    seqs = [a["seq"] for a in centre.alerts]
    assert len(seqs) == len(set(seqs))  # each stored once, however often it was sent
    assert sorted(seqs) == [a.seq for a in raised]  # and none missing
    assert uplink.stats.receipted == 2000  # every outbox row closed by a receipt, each once
    assert uplink.stats.sessions >= 2


def test_an_alert_raised_behind_a_backlog_of_event_batches_reaches_the_centre_first(store, broker, make_uplink):
    """A day's events for learning wait in 20 batches (a long outage); then a counter raises alerts.
    When the link is back, the alerts go out ahead of every batch, though the batches are older."""
    from counterguard.gateway.link.upload import EventUpload

    watchlist = Watchlist(store)
    watchlist.apply({"version": 1, "full": True, "add": [MULE]})
    for n in range(400):  # the branch's ordinary day: green verdicts, each an event for learning
        ev = parse_event({"event_id": f"day-{n}", "ts": "2024-05-06T09:30:00+08:00", "counter": 1 + n % 4,
                          "kind": "cash_withdrawal", "account": f"62220202{n:011d}", "amount": 300 + n})
        store.record_verdict(ev, b"{}", f"sha-day-{n}", Verdict(ev.event_id, "green", 0.02, (), "", ev.counter),
                             Stamp(time.time(), time.monotonic(), True), model_version="m-1", watchlist_version=1,
                             gateway_id=GW)
    upload = EventUpload(store, watchlist.hash, gateway_id=GW, batch_events=20)
    batches = []
    while (seq := upload.queue_next()) is not None:
        batches.append(seq)
    assert len(batches) == 20
    alerts = [raise_alert(store, 1000 + n) for n in range(3)]
    assert min(a.seq for a in alerts) > max(batches)  # the alerts are the newest rows in the outbox
    arrived = []
    with Receiver(broker.host, broker.port, on_record=lambda kind, body: arrived.append((kind, body["seq"]))) as centre:
        make_uplink(upload=upload)
        assert centre.wait_for(lambda r: len(arrived) == 23 and store.outbox_depth() == 0, timeout=20), \
            f"{arrived} arrived, outbox {store.outbox_depth()}"
    assert arrived == [("alert", a.seq) for a in alerts] + [("events", seq) for seq in batches]


def test_the_uplinks_notes_skip_the_disk_wait_and_alerts_keep_theirs(tmp_path):
    """When rows were sent and which the centre receipted is written without waiting for the disk
    (lost in a power cut, a row is only sent again); everything after is durable again."""
    with Store(tmp_path / "gateway.db", synchronous="FULL") as store:
        synchronous = lambda: store.db.execute("PRAGMA synchronous").fetchone()[0]  # noqa: E731
        alert = raise_alert(store, 1)
        with store.bookkeeping():
            store.mark_published([alert.seq], time.time())
            assert synchronous() == 1  # NORMAL
        assert synchronous() == 2  # FULL again for the next alert
        with pytest.raises(RuntimeError):
            with store.bookkeeping():
                store.receipt([alert.seq])
                raise RuntimeError("the uplink failed mid-note")
        assert synchronous() == 2 and store.outbox_depth() == 1  # rolled back, and durable again


def test_replays_after_an_outage_are_marked_historical(store, centre, make_uplink):
    old = raise_alert(store, 1, wall=time.time() - 60)  # raised a minute ago, while the link was down
    fresh = raise_alert(store, 2)
    make_uplink(historical_after_s=10)
    assert centre.wait_for(lambda r: len(r.alerts) == 2, timeout=10)
    historical = {a["alert_id"]: a["historical"] for a in centre.alerts}
    assert historical == {old.alert_id: True, fresh.alert_id: False}


def test_a_centre_that_comes_online_gets_everything_it_missed(store, broker, make_uplink):
    uplink = make_uplink(republish_after_s=600)  # no help from the republish timer
    assert wait_until(lambda: uplink.connected, 10)
    raise_alert(store, 1)
    uplink.wake()
    assert wait_until(lambda: uplink.stats.published >= 1, 10)  # published to nobody
    with Receiver(broker.host, broker.port) as centre:  # announces itself online
        assert centre.wait_for(lambda r: len(r.alerts) == 1 and store.outbox_depth() == 0, timeout=10)


def test_status_is_retained_online_and_stopped_after_a_clean_stop(store, broker, probe, make_uplink):
    uplink = make_uplink(status_fields=lambda: {"model_version": "m-1", "watchlist_version": 4,
                                                "software_version": "0.1.0"})
    assert wait_until(lambda: uplink.connected, 10)
    probe.subscribe(f"{ROOT}/status")  # subscribing late: the retained status is there
    assert probe.wait_for(lambda p: p.received(f"{ROOT}/status"), 5)
    online = probe.received(f"{ROOT}/status")[-1]
    assert online["state"] == "online" and online["bdseq"] == uplink.bdseq
    assert (online["model_version"], online["watchlist_version"], online["gateway_id"]) == ("m-1", 4, GW)
    uplink.stop()
    assert probe.wait_for(lambda p: p.received(f"{ROOT}/status")[-1]["state"] == "stopped", 5)
    time.sleep(0.3)
    assert [s["state"] for s in probe.received(f"{ROOT}/status")] == ["online", "stopped"]  # no last will


def test_heartbeats_report_the_outbox(store, broker, probe, make_uplink):
    probe.subscribe(f"{ROOT}/heartbeat")
    make_uplink(host="127.0.0.1", port=broker.port, heartbeat_fields=lambda: {"verdicts": {"red": 1}})
    assert probe.wait_for(lambda p: len(p.received(f"{ROOT}/heartbeat")) >= 1, 5)
    beat = probe.received(f"{ROOT}/heartbeat")[0]
    assert beat["outbox_depth"] == 0 and beat["verdicts"] == {"red": 1} and beat["time_synced"] is True


_DYING_GATEWAY = """
import sys, time
from counterguard.gateway.store.db import Store
from counterguard.gateway.scoring.watchlist import Watchlist
from counterguard.gateway.link.uplink import Uplink
store = Store(sys.argv[1])
up = Uplink(store, Watchlist(store), host="127.0.0.1", port=int(sys.argv[2]), gateway_id=sys.argv[3],
            region=sys.argv[4], branch=sys.argv[5], heartbeat_s=30, keepalive=60).start()
while not up.connected:
    time.sleep(0.01)
print(up.bdseq, flush=True)
time.sleep(60)
"""


def test_a_gateway_that_dies_without_a_goodbye_is_reported_offline_with_its_session(tmp_path, broker, centre):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", _DYING_GATEWAY, str(tmp_path / "dying.db"), str(broker.port),
                             GW, REGION, BRANCH], stdout=subprocess.PIPE, env=env, cwd=REPO)
    try:
        bdseq = int(proc.stdout.readline() or 0)
        assert bdseq >= 1, "the gateway process did not connect"
        assert centre.wait_for(lambda r: r.statuses.get(GW, {}).get("state") == "online", 10)
        proc.send_signal(signal.SIGKILL)  # a power cut: no DISCONNECT, the broker sends the last will
        proc.wait(10)
        assert centre.wait_for(lambda r: r.statuses[GW]["state"] == "offline", 10)
        assert centre.statuses[GW]["bdseq"] == bdseq  # the will of the session that just died
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        proc.stdout.close()


def test_a_watchlist_delta_from_the_centre_is_applied_and_kept(store, tmp_path, probe, make_uplink):
    uplink = make_uplink()
    uplink.watchlist.apply({"version": 4, "full": True, "add": ["6222000011112222"]})
    assert wait_until(lambda: uplink.connected, 10)
    probe.publish(f"counterguard/v1/{REGION}/watchlist",
                  {"version": 5, "full": False, "base_version": 4, "add": [MULE], "remove": []})
    assert wait_until(lambda: uplink.watchlist.version == 5, 10)
    assert uplink.watchlist.contains(MULE)
    assert Watchlist(store).contains(MULE)  # persisted, not only in memory
    assert store.meta_get("watchlist_version") == "5"


@pytest.mark.parametrize("topic, payload", [
    (f"{ROOT}/receipt", b"{not json"),
    (f"{ROOT}/receipt", b'{"seqs": ["one"]}'),
    (f"{ROOT}/watchlist", b'{"version": 1, "full": false, "base_version": 99, "add": []}'),
    ("counterguard/v1/all/watchlist", b"\xff\xfe"),
    ("counterguard/v1/centre/status", b'{"state": "sleepy"}'),
])
def test_a_malformed_downlink_is_ignored_and_the_uplink_carries_on(store, centre, probe, make_uplink, topic, payload):
    uplink = make_uplink()
    assert wait_until(lambda: uplink.connected, 10)
    probe.publish(topic, payload)
    assert wait_until(lambda: uplink.stats.downlink_rejected == 1, 10)
    raise_alert(store, 1)
    uplink.wake()
    assert centre.wait_for(lambda r: len(r.alerts) == 1 and store.outbox_depth() == 0, timeout=10)
    assert uplink.connected and uplink.watchlist.version == 0


@pytest.mark.parametrize("attempt, draw, expected", [
    (0, 0.0, 1.0), (0, 1.0, 2.0), (0, 0.5, 1.5),  # even the first retry is spread over a window
    (1, 1.0, 4.0), (3, 1.0, 16.0), (3, 0.5, 8.5),  # the window doubles; the draw picks a point in it
    (20, 1.0, 120.0), (20, 0.0, 1.0),  # capped, but still spread over the whole window
])
def test_reconnect_delays_are_jittered_exponential_within_the_bounds(attempt, draw, expected):
    backoff = Backoff(1.0, 120.0, rng=lambda: draw)
    backoff.attempt = attempt
    assert backoff.next() == pytest.approx(expected)


def test_topic_names_that_would_break_the_tree_are_refused(store):
    with pytest.raises(messages.TopicError, match="branch 'b/1'"):
        Uplink(store, Watchlist(store), host="127.0.0.1", port=1883, gateway_id=GW, region=REGION, branch="b/1")


def test_a_gateway_given_a_clusters_nodes_fails_over_past_a_dead_one(store, centre, broker, make_uplink):
    """The first node in mqtt.host is down: the gateway moves on to the next and its alerts arrive."""
    import socket

    with socket.socket() as s:  # a loopback port nobody listens on: a broker node that is down
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    uplink = make_uplink(host=f"127.0.0.1:{dead}, {broker.host}:{broker.port}", port=1)
    assert uplink.brokers == [("127.0.0.1", dead), (broker.host, broker.port)]
    raise_alert(store, 1)
    uplink.wake()
    assert centre.wait_for(lambda r: len(r.alerts) == 1 and store.outbox_depth() == 0, timeout=15)
    assert (uplink.host, uplink.port) == (broker.host, broker.port)


def test_a_broker_list_takes_each_nodes_port_or_the_default():
    from counterguard.gateway.link.uplink import broker_list

    assert broker_list("mq1.centre.example, mq2.centre.example:8884", 8883) == [
        ("mq1.centre.example", 8883), ("mq2.centre.example", 8884)]
    assert broker_list("127.0.0.1", 1883) == [("127.0.0.1", 1883)]
    with pytest.raises(ValueError, match="mqtt.host"):
        broker_list(" , ", 1883)


def test_a_drain_waits_a_moment_for_a_busy_counter_line_but_never_for_good(store, centre, make_uplink):
    """Counters first: while a counter line answers frame after frame, each chunk of a drain waits for
    a quiet moment, at most ``counter_wait_max_s``, so the outbox still empties; a quiet line costs
    the drain nothing."""
    busy = make_uplink(last_answer=time.monotonic)  # a counter answering all the time
    for n in range(300):
        raise_alert(store, n)
    busy.wake()
    assert centre.wait_for(lambda r: len(r.alerts) == 300 and store.outbox_depth() == 0, timeout=30), \
        f"centre has {len(centre.alerts)} alerts, outbox {store.outbox_depth()}"
    assert busy.stats.yielded >= 2  # 300 rows are at least two chunks of the 200-row window
    busy.stop()
    quiet = make_uplink(last_answer=lambda: 0.0)  # the counters last answered long ago
    for n in range(300, 600):
        raise_alert(store, n)
    quiet.wake()
    assert centre.wait_for(lambda r: len(r.alerts) == 600 and store.outbox_depth() == 0, timeout=30)
    assert quiet.stats.yielded == 0


def test_the_gateways_uplink_knows_when_a_counter_line_last_answered(broker, tmp_path):
    from gpiozero.pins.mock import MockFactory

    from counterguard.gateway.counter.terminal import TellerTerminal
    from counterguard.gateway.ops.app import Gateway
    from harness import event, gateway_config, pty_pair

    with pty_pair() as (master, path):
        gw = Gateway(gateway_config(tmp_path, broker_port=broker.port, serial_path=path), pin_factory=MockFactory())
        gw.start()
        try:
            assert gw.uplink.last_answer() == 0.0  # nothing answered yet
            before = time.monotonic()
            assert TellerTerminal(master, timeout=5).send(event()).type == "ACK"
            assert before <= gw.uplink.last_answer() == gw.lines[0].answered_at <= time.monotonic()
        finally:
            gw.stop()
