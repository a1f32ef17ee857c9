"""What the centre sends down: the stop-payment list, models and thresholds, as signed, versioned
manifests (core/manifest.py encodes and signs them; this module decides what goes in them).

Each push gets the next version of its kind (one sequence per kind across every target, because a
gateway holds one version per kind and refuses anything not newer). It is published QoS 1 and
retained on the target's topic, so a gateway that connects later still gets the latest, and is
kept in the store with what it carried.

Watchlist entries are keyed hashes of account numbers (HMAC-SHA256 with the watchlist key), never
the numbers themselves. The centre keeps each target's own entries; a push adds and removes entries
and publishes the whole resulting list (``full``): a retained delta would be useless to a gateway
that connects later, since it holds another base version. A gateway holds one list, so a region's
or a gateway's list also carries the entries of the targets above it (see ``push_watchlist``).

``rollout`` answers "who has it?": for the latest manifest of each kind and target, the gateways
in that target whose status or heartbeat reports that version (or a later one) and those that do
not yet.

    downlink = Downlink(store, load_private_key("centre-signing.pem"), watchlist_key=load_watchlist_key("wl.key"))
    pushes = downlink.push_watchlist("all", add=["6217000099887766554"])
    publish_retained("127.0.0.1", 1883, [(p.topic, p.envelope) for p in pushes])
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from counterguard.core import jsontext, messages
from counterguard.core import manifest as signed

KIND_FIELD = {"watchlist": "watchlist_version", "model": "model_version", "thresholds": "thresholds_version",
              "shadow": "shadow_manifest_version"}


class DownlinkError(ValueError):
    """A push cannot be made; the message says what to fix (file, account, target, threshold)."""


@dataclass(frozen=True)
class Pushed:
    kind: str
    version: int
    target: str
    topic: str
    envelope: bytes
    summary: dict


def _now() -> str:
    return messages.iso(time.time())


class Downlink:
    """Builds, signs and records manifests; ``publish_retained`` puts them on the broker."""

    def __init__(self, store, signing_key, *, watchlist_key: bytes | None = None, key_version: int = 1):
        self.store = store
        self.signing_key = signing_key
        self.watchlist_key = watchlist_key
        self.key_version = key_version

    def _topic(self, target: str, kind: str) -> str:
        root = None
        if isinstance(target, str) and target.startswith("gateway/"):
            gateway_id = target.split("/", 1)[1]
            row = self.store.gateway(gateway_id)
            if row is None:
                raise DownlinkError(f"target {target!r}: the centre has never heard from gateway {gateway_id!r}, "
                                    "so it does not know its region and branch")
            root = messages.topic_root(row["region"], row["branch"], gateway_id)
        try:
            return signed.manifest_topic(target, kind, root=root)
        except signed.ManifestError as exc:
            raise DownlinkError(str(exc)) from None

    def _push(self, kind: str, target: str, body: dict, summary: dict, watchlist: list[str] | None = None) -> Pushed:
        topic = self._topic(target, kind)
        version = self.store.last_version(kind) + 1
        manifest = {"kind": kind, "version": version, "issued_at": _now(), "target": target, **body}
        try:
            envelope = signed.sign_envelope(manifest, self.signing_key)
        except signed.ManifestError as exc:
            raise DownlinkError(f"{kind} manifest refused: {exc}") from None
        summary = {**summary, "bytes": len(envelope)}
        self.store.record_manifest(kind=kind, version=version, target=target, topic=topic,
                                   issued_at=manifest["issued_at"], summary=summary,
                                   envelope=envelope.decode("ascii"), watchlist=watchlist)
        return Pushed(kind, version, target, topic, envelope, summary)

    # -- the stop-payment list ------------------------------------------------------------------
    def _hash(self, account: str) -> str:
        if self.watchlist_key is None:
            raise DownlinkError("adding or removing accounts needs the watchlist key (--watchlist-key FILE)")
        try:
            return signed.account_hash(self.watchlist_key, account)
        except signed.ManifestError as exc:
            raise DownlinkError(f"watchlist account {exc}") from None

    def _scopes(self, target: str) -> list[str]:
        """The targets whose lists a gateway under ``target`` must hold: all, its region, itself."""
        if target == "all":
            return ["all"]
        if target.startswith("region/"):
            return ["all", target]
        gateway_id = target.split("/", 1)[1]
        row = self.store.gateway(gateway_id)
        return ["all"] + ([f"region/{row['region']}"] if row else []) + [target]

    def _under(self, target: str) -> list[str]:
        """Targets with a list of their own below ``target`` (regions before gateways)."""
        if target.startswith("gateway/"):
            return []
        below = []
        for other in self.store.watchlist_targets():
            if other == target or other == "all":
                continue
            if target == "all" or (other.startswith("gateway/") and
                                   f"region/{(self.store.gateway(other.split('/', 1)[1]) or {}).get('region')}"
                                   == target):
                below.append(other)
        return sorted(below, key=lambda t: (t.startswith("gateway/"), t))

    def _list_manifest(self, target: str, own: list[str], summary: dict) -> Pushed:
        entries = set(own)
        for scope in self._scopes(target)[:-1]:
            entries |= set(self.store.watchlist(scope))
        entries = sorted(entries)
        body = {"full": True, "add": entries, "hash": signed.HASH_NAME, "key_version": self.key_version}
        return self._push("watchlist", target, body, {**summary, "entries": len(entries)}, watchlist=own)

    def push_watchlist(self, target: str, *, add=(), remove=(), add_hashes=(), remove_hashes=(),
                       replace: bool = False) -> list[Pushed]:
        """Change ``target``'s own list (accounts are hashed here; hashes are taken as they are) and
        push it; ``replace`` starts from an empty list instead of the one in force.

        A gateway holds one list, so what goes to a region or a gateway is its own entries plus
        those of every target above it (all, its region). When a list changes, the targets below it
        that have entries of their own are pushed again after it, with newer versions, so their
        gateways keep both. Returns every manifest made, the target's first."""
        for h in list(add_hashes) + list(remove_hashes):
            if not signed.is_account_hash(h):
                raise DownlinkError(f"{h!r} is not a keyed account hash (64 lowercase hex digits)")
        adding = {self._hash(a) for a in add} | set(add_hashes)
        removing = {self._hash(a) for a in remove} | set(remove_hashes)
        self._topic(target, "watchlist")  # an unknown target is refused before anything is recorded
        current = set() if replace else set(self.store.watchlist(target))
        own = sorted((current - removing) | adding)
        pushed = [self._list_manifest(target, own, {"own_entries": len(own), "added": len(adding - current),
                                                    "removed": len(current & removing)})]
        for below in self._under(target):
            mine = self.store.watchlist(below)
            pushed.append(self._list_manifest(below, mine, {"own_entries": len(mine), "added": 0, "removed": 0,
                                                            "because_of": target}))
        return pushed

    # -- models and thresholds ------------------------------------------------------------------
    def push_model(self, target: str, tflite_path, *, card_path=None, model_version: str | None = None,
                   shadow: bool = False) -> Pushed:
        """Push a .tflite file and its JSON sidecar (the model card, next to it by default); with
        ``shadow``, as a challenger the gateways score beside the model in force (kind "shadow")."""
        tflite_path = Path(tflite_path)
        card_path = Path(card_path) if card_path else tflite_path.with_suffix(".json")
        try:
            data = tflite_path.read_bytes()
        except OSError as exc:
            raise DownlinkError(f"{tflite_path}: cannot read the model: {exc.strerror or exc}") from None
        try:
            card = jsontext.loads(card_path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise DownlinkError(f"{card_path}: cannot read the model card: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise DownlinkError(f"{card_path}: the model card is not JSON: {exc}") from None
        if not isinstance(card, dict):
            raise DownlinkError(f"{card_path}: the model card must be a JSON object")
        # A gateway refuses a model whose version is not its card's: refuse it here, before it is
        # signed and sent to every gateway in the target.
        card_version = card.get("version")
        if card_version in (None, ""):
            raise DownlinkError(f"{card_path}: the model card has no \"version\"; gateways refuse a model "
                                "without one (add it to the card)")
        if model_version and str(model_version) != str(card_version):
            raise DownlinkError(f"--model-version {model_version} differs from the version {card_version} in the "
                                f"model card {card_path}; gateways would refuse it (leave --model-version out, "
                                "or push the card of that version)")
        return self.push_model_bytes(target, data, card, shadow=shadow)

    def push_model_bytes(self, target: str, data: bytes, card: dict, *, shadow: bool = False,
                         rollback: bool = False, note: str | None = None) -> Pushed:
        """Push model bytes with their card: as the model in force, as a challenger (``shadow``), or
        as a ``rollback`` the gateways apply at once, even with red alerts open."""
        model_version = str(card.get("version"))
        # The model fields come from the shared builder; the common ones (version, time, target) are
        # set by _push like every other kind's.
        body = signed.model_manifest(data, card, version=1, model_version=model_version, target=target,
                                     issued_at=_now())
        body = {k: v for k, v in body.items() if k not in ("kind", "version", "issued_at", "target")}
        summary = {"model_version": model_version, "sha256": body["sha256"], "model_bytes": len(data)}
        if rollback:
            body["rollback"] = summary["rollback"] = True
        if note:
            body["note"] = note[:500]
        return self._push("shadow" if shadow else "model", target, body, summary)

    def retire_shadow(self, target: str) -> Pushed:
        """Stop the challenger scoring in shadow at the target's gateways."""
        return self._push("shadow", target, {"retire": True}, {"retired": True})

    def push_thresholds(self, target: str, *, amber: float, red: float) -> Pushed:
        if not 0 < amber < red <= 1:
            raise DownlinkError(f"thresholds need 0 < amber < red <= 1, got amber {amber} and red {red}")
        return self._push("thresholds", target, {"amber": float(amber), "red": float(red)},
                          {"amber": float(amber), "red": float(red)})


# -- who has applied what -------------------------------------------------------------------------
def _in_target(gateway: dict, target: str) -> bool:
    if target == "all":
        return True
    scope, _, name = target.partition("/")
    return gateway["region"] == name if scope == "region" else gateway["gateway_id"] == name


def _has(gateway: dict, kind: str, manifest: dict) -> bool:
    if kind == "model" and gateway.get("model_manifest_version") is not None:
        held = gateway["model_manifest_version"]  # the manifest version the gateway applied
    elif kind == "model":
        return gateway.get("model_version") == manifest["summary"].get("model_version")
    else:
        held = gateway.get(KIND_FIELD[kind])
    if held is None:
        return False
    try:
        return int(held) >= manifest["version"]
    except ValueError:
        return False


def rollout(store) -> list[dict]:
    """For the latest manifest of each (kind, target): which gateways report it applied, which not."""
    latest: dict[tuple[str, str], dict] = {}
    for m in store.manifests():
        latest[(m["kind"], m["target"])] = m
    gateways = store.gateways()
    out = []
    for (kind, target), m in sorted(latest.items()):
        scope = [g for g in gateways if _in_target(g, target)]
        applied = [g["gateway_id"] for g in scope if _has(g, kind, m)]
        pending = [g["gateway_id"] for g in scope if not _has(g, kind, m)]
        out.append({"kind": kind, "target": target, "version": m["version"], "summary": m["summary"],
                    "published_at": m["published_at"], "applied": applied, "pending": pending})
    return out


def publish_retained(host: str, port: int, items, *, timeout: float = 30.0, client_id: str | None = None,
                     username: str | None = None, password: str | None = None, tls: dict | None = None,
                     retain: bool = True) -> None:
    """Publish ``(topic, payload)`` pairs QoS 1 retained (``retain``) and wait until the broker has each one."""
    connected = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"centre-downlink-{time.time_ns()}")
    client.on_connect = lambda c, u, f, rc, p: connected.set() if not rc.is_failure else None
    if username:
        client.username_pw_set(username, password)
    if tls:
        client.tls_set(**tls)
    try:
        client.connect(host, int(port), keepalive=30)
    except OSError as exc:
        raise ConnectionError(f"cannot reach the broker at {host}:{port}: {exc}") from None
    client.loop_start()
    try:
        if not connected.wait(timeout):
            raise ConnectionError(f"the broker at {host}:{port} did not accept the connection within {timeout} s")
        infos = [client.publish(topic, payload, qos=1, retain=retain) for topic, payload in items]
        deadline = time.monotonic() + timeout
        for info in infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            if not info.is_published():
                raise ConnectionError(f"the broker at {host}:{port} did not confirm a manifest within {timeout} s")
    finally:
        client.disconnect()
        client.loop_stop()
