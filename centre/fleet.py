"""The fleet: which gateways are online, offline (their last will) or stopped, and what they run.

Each gateway's retained status carries a birth/death sequence (``bdseq``) that grows by one per
MQTT session; a session's last will carries that session's number. So the order of status
documents is (bdseq, then online before offline/stopped), and the centre keeps only a document
that is not older than the one it holds. That makes a stale will (from an earlier session,
delivered late) harmless, and lets several centre workers see the same status and write it
without stepping on each other: applying a document twice, or out of order, ends in the same row.

One exception keeps a re-provisioned gateway (whose store, and so its ``bdseq``, started again)
from being locked out: an ``online`` with a lower ``bdseq`` is accepted while the gateway is
known to be offline or stopped.

The centre announces itself with a retained ``counterguard/v1/centre/status`` (``online`` on
connect, ``offline`` as its last will), which tells gateways to re-announce and resend what the
centre has not receipted; ``announce`` and ``will`` build those.
"""

from __future__ import annotations

import time

from counterguard.core import messages

STATE_RANK = {"online": 0, "offline": 1, "stopped": 1}
# A gateway whose heartbeat is this many heartbeat periods late is shown as silent.
SILENT_AFTER_HEARTBEATS = 3


def supersedes(new: dict, current: dict | None) -> bool:
    """Should status ``new`` replace ``current`` (both with "state" and "bdseq")?"""
    if current is None or current.get("state") is None or current.get("bdseq") is None:
        return True
    new_key = (new["bdseq"], STATE_RANK[new["state"]])
    cur_key = (current["bdseq"], STATE_RANK.get(current["state"], 0))
    if new_key >= cur_key:
        return True
    # A gateway that starts again from scratch comes back with a low bdseq; let it in when it is
    # known to be down (a lagging copy of an old "online" cannot then overwrite a live session).
    return new["state"] == "online" and current["state"] != "online" and new["bdseq"] < current["bdseq"]


def heartbeat_is_current(bdseq: int, current: dict | None) -> bool:
    """A heartbeat from an earlier session than the status in force is stale."""
    return current is None or current.get("bdseq") is None or bdseq >= current["bdseq"]


def presence(row: dict, *, now: float | None = None, heartbeat_s: float = 30.0) -> str:
    """What the dashboard shows: the status state, or ``silent`` for an online gateway whose
    heartbeats stopped (the broker has not noticed yet), or ``unknown`` before any status."""
    state = row.get("state") or "unknown"
    last = row.get("last_heartbeat_at") or row.get("status_received_at")
    now = time.time() if now is None else now
    if state == "online" and last is not None and now - last > SILENT_AFTER_HEARTBEATS * heartbeat_s:
        return "silent"
    return state


def announce(wall: float | None = None) -> str:
    return messages.centre_status_payload("online", time.time() if wall is None else wall)


def will(wall: float | None = None) -> str:
    return messages.centre_status_payload("offline", time.time() if wall is None else wall)
