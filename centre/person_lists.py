"""The lists of persons at the centre: warned persons and restricted persons (core/lists.py), kept as
keyed hashes and pushed to every gateway as signed deltas.

The police's early-warning file or a sector's restriction file comes in with identity numbers and
phones in clear; each is verified and hashed here with the alliance key (core/identity.py, the key
the gateways hash their customers with) and only the hash is kept or sent. A file with bad lines is
refused whole, every bad line named by number, so a half-imported police file never goes out.

A push is a delta against the version the gateways hold, split into manifests of at most
``MAX_PER_MANIFEST`` entries (one version each, each based on the one before), signed and
published retained on the ``all`` topic, so a gateway online gets each in turn. A gateway that
missed one reports the gap (or a version behind) in its status; ``repairs`` finds those gateways and
``snapshot`` makes the whole list, in numbered parts of the version in force, for that gateway's
own topic. Lists of persons go to every gateway: warnings and restrictions follow a person, not a
branch.

    lists = PersonListPush(store, signing_key, key=alliance_key, key_version=1)
    pushes = lists.push("warned_persons", add=[Entry.parse(...)], remove=[])
"""

from __future__ import annotations

import json
import time
from datetime import date

from counterguard.centre.downlink import Pushed as PushedList  # one record of a signed push, any kind
from counterguard.core import manifest as signed
from counterguard.core import messages
from counterguard.core.lists import (  # noqa: F401  (the entry helpers are used through this module too)
    KINDS,
    MAX_PER_MANIFEST,
    ListError,
    ListInputError,
    default_days,
    hash_value,
    make_entry,
    read_entries,
)

REPAIR_EVERY_S = 600.0  # a gateway still behind is sent the list again at most this often
REPAIR_GRACE_S = 60.0  # a gateway behind for less than this may just be applying the last push


class PersonListPush:
    """Builds, signs and records the pushes of the lists of persons."""

    def __init__(self, store, signing_key, *, key: bytes | None, key_version: int = 1):
        self.store = store
        self.signing_key = signing_key
        self.key = key
        self.key_version = key_version

    def _manifest(self, kind: str, version: int, body: dict, target: str = "all") -> dict:
        return {"kind": kind, "version": version, "issued_at": messages.iso(time.time()), "target": target,
                "hash": signed.HASH_NAME, "key_version": self.key_version, **body}

    def push(self, kind: str, *, add: list, remove: list, full: bool = False) -> list[PushedList]:
        """Change the list and sign the change: deltas of at most MAX_PER_MANIFEST entries (a new
        version each), or with ``full`` the whole list in parts of one new version."""
        if kind not in KINDS:
            raise ListError(f"list {kind!r} is not one of {', '.join(KINDS)}")
        current = {e[0]: list(e) for e in self.store.person_entries(kind)}
        adding = {e[0]: e for e in add}  # a value twice in one push counts once, as its last line
        removing = sorted(h for h in set(remove) if h not in adding)
        if not full:
            removing = [h for h in removing if h in current]  # removing what is not there changes nothing
        version = self.store.last_version(kind)
        topic = signed.manifest_topic("all", kind)
        made = []
        if full:
            entries = sorted(adding.values())
            chunks = [entries[i:i + MAX_PER_MANIFEST] for i in range(0, len(entries), MAX_PER_MANIFEST)] or [[]]
            version += 1
            for n, chunk in enumerate(chunks, 1):
                body = {"full": True, "add": chunk, **({"part": n, "parts": len(chunks)} if len(chunks) > 1 else {})}
                made.append(self._sign(kind, version, body, topic,
                                       {"entries": len(entries), "part": n, "parts": len(chunks)}))
        else:
            changes = [("add", e) for e in sorted(adding.values())] + [("remove", h) for h in removing]
            for i in range(0, len(changes), MAX_PER_MANIFEST):
                piece = changes[i:i + MAX_PER_MANIFEST]
                version += 1
                body = {"full": False, "base_version": version - 1, "add": [e for what, e in piece if what == "add"],
                        "remove": [e for what, e in piece if what == "remove"]}
                made.append(self._sign(kind, version, body, topic, {"added": len(body["add"]),
                                                                     "removed": len(body["remove"])}))
        # One record per version (the parts of a full list share theirs: the first part stands for it).
        firsts = {m.version: m for m in reversed(made)}
        self.store.record_list_push(kind, [{"version": m.version, "target": m.target, "topic": m.topic,
                                            "issued_at": m.summary["issued_at"],
                                            "summary": m.summary, "envelope": m.envelope.decode("ascii")}
                                           for m in firsts.values()],
                                    full=full, add=sorted(adding.values()), remove=removing)
        return made

    def _sign(self, kind: str, version: int, body: dict, topic: str, summary: dict,
              target: str = "all") -> PushedList:
        manifest = self._manifest(kind, version, body, target)
        envelope = signed.sign_envelope(manifest, self.signing_key)
        return PushedList(kind, version, target, topic, envelope,
                          {**summary, "bytes": len(envelope), "issued_at": manifest["issued_at"]})

    def snapshot(self, kind: str, gateway_id: str) -> list[PushedList]:
        """The whole list in force, in parts of its current version, for one gateway's own topic (a
        gateway that missed a delta). Not recorded: it repeats a version already pushed."""
        row = self.store.gateway(gateway_id)
        if row is None:
            raise ListError(f"the centre has never heard from gateway {gateway_id!r}")
        target = f"gateway/{gateway_id}"
        topic = signed.manifest_topic(target, kind, root=messages.topic_root(row["region"], row["branch"], gateway_id))
        version = self.store.last_version(kind)
        today = date.today().toordinal()
        entries = [list(e) for e in self.store.person_entries(kind) if date.fromisoformat(e[3]).toordinal() >= today]
        chunks = [entries[i:i + MAX_PER_MANIFEST] for i in range(0, len(entries), MAX_PER_MANIFEST)] or [[]]
        return [self._sign(kind, version, {"full": True, "add": chunk,
                                           **({"part": n, "parts": len(chunks)} if len(chunks) > 1 else {})},
                           topic, {"entries": len(entries), "part": n, "parts": len(chunks), "repair": True},
                           target=target)
                for n, chunk in enumerate(chunks, 1)]

    def repairs(self, *, now: float | None = None, sent: dict | None = None) -> list[tuple[str, str]]:
        """(gateway_id, kind) of gateways behind on a list for longer than REPAIR_GRACE_S, or that
        report a gap, and not sent a snapshot in the last REPAIR_EVERY_S (``sent``: when each was)."""
        now = time.time() if now is None else now
        sent = {} if sent is None else sent
        latest = {kind: (self.store.last_version(kind), self._pushed_at(kind)) for kind in KINDS}
        out = []
        for g in self.store.gateways():
            if g.get("state") != "online" or not g.get("lists"):
                continue
            try:
                held = json.loads(g["lists"])
            except ValueError:
                continue
            for kind, (version, pushed_at) in latest.items():
                mine = held.get(kind) or {}
                if not version or mine.get("version", 0) >= version:
                    continue
                if not mine.get("gap") and now - pushed_at < REPAIR_GRACE_S:
                    continue  # probably still applying the last push
                if now - sent.get((g["gateway_id"], kind), 0.0) < REPAIR_EVERY_S:
                    continue
                out.append((g["gateway_id"], kind))
        return out

    def _pushed_at(self, kind: str) -> float:
        return max((float(m["published_at"]) for m in self.store.manifests(kind)), default=0.0)


def summary(store, *, today: date | None = None) -> list[dict]:
    """Each list of persons as the centre holds it: its version, entries in force and past their
    last day, where the entries came from (category or source), and which gateways hold it."""
    today = (today or date.today()).isoformat()
    gateways = []
    for g in store.gateways():
        try:
            gateways.append((g["gateway_id"], json.loads(g["lists"]) if g.get("lists") else {}))
        except ValueError:
            gateways.append((g["gateway_id"], {}))
    out = []
    for kind in KINDS:
        version = store.last_version(kind)
        entries = store.person_entries(kind)
        labels: dict = {}
        for _, label, _, last in entries:
            if last >= today:
                labels[label] = labels.get(label, 0) + 1
        held = {gid: lists.get(kind) or {} for gid, lists in gateways}
        out.append({"kind": kind, "version": version, "in_force": sum(labels.values()),
                    "expired": sum(1 for e in entries if e[3] < today), "by_label": dict(sorted(labels.items())),
                    "gateways_current": sorted(g for g, h in held.items() if version and h.get("version", 0) >= version),
                    "gateways_behind": sorted(g for g, h in held.items() if version and h.get("version", 0) < version),
                    "gateways_with_gap": sorted(g for g, h in held.items() if h.get("gap"))})
    return out


def confirmed_sales(store) -> list[dict]:
    """Persons an outlet's supervisor confirmed were selling or renting their cards (outcome
    ``card_sale_confirmed``, the last outcome of the alert): candidates for the restricted list,
    never put on it by themselves. Each: the person's keyed hash, the sector that found it
    (carrier for SIM cards, bank for accounts), the alert and its gateway."""
    last = {}
    for o in store.outcomes():
        last[(o["gateway_id"], o["alert_id"])] = o["outcome"]
    wanted = {key for key, outcome in last.items() if outcome == "card_sale_confirmed"}
    out = []
    for r in store.find_alerts(limit=None) if wanted else ():
        if (r["gateway_id"], r["alert_id"]) in wanted and r["payload"].get("customer_id_hash"):
            body = r["payload"]
            out.append({"hash": body["customer_id_hash"], "source": "carrier" if body["kind"] == "sim_activation"
                        else "bank", "alert_id": r["alert_id"], "gateway_id": r["gateway_id"]})
    return out
