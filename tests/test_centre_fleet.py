"""The fleet view: online, offline (the broker's last will after a dead link), stopped, heartbeats
and versions; stale wills recognised by their birth/death sequence; the centre's own presence."""

from __future__ import annotations

import json

import pytest

from counterguard.centre import fleet
from counterguard.centre.ingest import IngestWorker
from counterguard.centre.store import open_store
from centre_support import SilentableRelay, SimGateway
from conftest import MqttProbe
from counterguard.core import messages


def _state(store, gateway_id):
    row = store.gateway(gateway_id)
    return row and row["state"]


def test_a_gateway_whose_link_goes_dead_shows_offline_within_the_keepalive_window(broker, tmp_path):
    store = open_store(tmp_path / "centre.db")
    relay = SilentableRelay(broker.port)
    with IngestWorker(open_store(tmp_path / "centre.db"), host=broker.host, port=broker.port) as worker:
        # keepalive 2 s: the broker gives up on a silent client after 1.5 x 2 = 3 s and sends its will.
        gw = SimGateway("127.0.0.1", relay.port, "gw-0001", keepalive=2)
        assert worker.wait_for(lambda w: _state(store, "gw-0001") == "online", 20)
        relay.go_silent()  # the cable is cut: no FIN, no RST, just nothing
        assert worker.wait_for(lambda w: _state(store, "gw-0001") == "offline", 25), store.gateway("gw-0001")
        assert store.gateway("gw-0001")["bdseq"] == gw.bdseq
        gw.client.loop_stop()
    relay.close()
    store.close()


def test_online_stopped_heartbeat_and_versions_are_shown(broker, tmp_path):
    store = open_store(tmp_path / "centre.db")
    with IngestWorker(open_store(tmp_path / "centre.db"), host=broker.host, port=broker.port) as worker:
        gw = SimGateway(broker.host, broker.port, "gw-0001", region="610100", branch="b0231", bdseq=7)
        gw.heartbeat(outbox_depth=4, model_version="1.0.0", watchlist_version=12, thresholds_version=3)
        assert worker.wait_for(lambda w: (store.gateway("gw-0001") or {}).get("outbox_depth") == 4, 20)
        row = store.gateway("gw-0001")
        assert (row["state"], row["bdseq"], row["region"], row["branch"]) == ("online", 7, "610100", "b0231")
        assert (row["model_version"], row["watchlist_version"], row["thresholds_version"]) == ("1.0.0", "12", "3")
        assert row["last_heartbeat_at"] is not None
        gw.goodbye()
        assert worker.wait_for(lambda w: _state(store, "gw-0001") == "stopped", 20)
    store.close()


def test_a_late_will_from_an_earlier_session_does_not_mark_a_live_gateway_offline(broker, tmp_path):
    store = open_store(tmp_path / "centre.db")
    with IngestWorker(open_store(tmp_path / "centre.db"), host=broker.host, port=broker.port) as worker:
        gw = SimGateway(broker.host, broker.port, "gw-0001", bdseq=5)
        assert worker.wait_for(lambda w: _state(store, "gw-0001") == "online", 20)
        stale = json.loads(gw.status("offline"))
        stale["bdseq"] = 4
        gw.publish("status", json.dumps(stale))
        gw.heartbeat(outbox_depth=1)  # published after the stale will: once it is in, the will was seen
        assert worker.wait_for(lambda w: w.stats.heartbeats >= 1, 20)
        assert (_state(store, "gw-0001"), store.gateway("gw-0001")["bdseq"]) == ("online", 5)
        gw.close()
    store.close()


@pytest.mark.parametrize("current, new, applies", [
    (None, ("online", 1), True),
    (("online", 5), ("offline", 5), True),       # this session's will
    (("online", 5), ("offline", 4), False),      # an earlier session's will, late
    (("offline", 5), ("online", 5), False),      # a lagging copy of this session's birth
    (("offline", 5), ("online", 6), True),       # the next session
    (("stopped", 9), ("online", 1), True),       # a gateway set up again from scratch
    (("online", 9), ("online", 1), False),       # ... but not over a live session
    (("online", 5), ("stopped", 5), True),
])
def test_status_order_follows_the_birth_death_sequence(current, new, applies):
    cur = None if current is None else {"state": current[0], "bdseq": current[1]}
    assert fleet.supersedes({"state": new[0], "bdseq": new[1]}, cur) is applies


def _crash(worker):
    """The worker's process dies: its network loop stops and its socket just goes away (no goodbye)."""
    worker._client.loop_stop()  # noqa: SLF001  (and so it cannot reconnect and say online itself)
    worker._client.socket().close()  # noqa: SLF001


def test_the_centre_announces_itself_retained_and_its_will_says_offline(broker, tmp_path):
    probe = MqttProbe(broker, "watcher")
    probe.subscribe(messages.CENTRE_STATUS)
    worker = IngestWorker(open_store(tmp_path / "centre.db"), host=broker.host, port=broker.port).start()
    assert probe.wait_for(lambda p: [m["state"] for m in p.received(messages.CENTRE_STATUS)][-1:] == ["online"])
    # A worker that dies without a goodbye: the broker publishes its will.
    _crash(worker)
    assert probe.wait_for(lambda p: "offline" in [m["state"] for m in p.received(messages.CENTRE_STATUS)], 20)
    worker.stop(say_offline=False)
    probe.close()


def test_when_one_worker_dies_the_other_says_online_again_so_gateways_resend(broker, tmp_path):
    probe = MqttProbe(broker, "watcher")
    probe.subscribe(messages.CENTRE_STATUS)
    a = IngestWorker(open_store(tmp_path / "centre.db"), host=broker.host, port=broker.port, client_id="c-a").start()
    b = IngestWorker(open_store(tmp_path / "centre.db"), host=broker.host, port=broker.port, client_id="c-b").start()
    _crash(a)
    states = lambda p: [m["state"] for m in p.received(messages.CENTRE_STATUS)]  # noqa: E731
    assert probe.wait_for(lambda p: "offline" in states(p) and states(p)[-1] == "online", 20), states(probe)
    a.stop(say_offline=False)
    b.stop()
    probe.close()


@pytest.mark.parametrize("row, now, shown", [
    ({"state": "online", "last_heartbeat_at": 1000.0}, 1060.0, "online"),    # two heartbeats late: still online
    ({"state": "online", "last_heartbeat_at": 1000.0}, 1091.0, "silent"),    # three missed: the link is suspect
    ({"state": "online", "last_heartbeat_at": None, "status_received_at": 1000.0}, 1200.0, "silent"),
    ({"state": "offline", "last_heartbeat_at": 1000.0}, 5000.0, "offline"),
    ({"state": None, "last_heartbeat_at": 1000.0}, 1001.0, "unknown"),       # heartbeats but no status yet
])
def test_an_online_gateway_whose_heartbeats_stop_is_shown_silent(row, now, shown):
    assert fleet.presence(row, now=now, heartbeat_s=30.0) == shown
