"""The signed downlink, gateway side: models, thresholds, the stop-payment list and the lists of
persons from the centre, checked before they touch a verdict.

A manifest arrives on one of the gateway's eighteen manifest topics (all / region / this gateway, for
each of watchlist, model, thresholds, shadow, warned_persons, restricted_persons; retained, so a
gateway that was off gets the latest). It is
applied only if, in order: the envelope's signature verifies with the centre public key in the
config and its key id matches; its target and kind match the topic; its version is newer than the
one in force (an older or equal one is a replay and is ignored); a model's sha256 matches its bytes
and the model loads and fits this gateway's features. Anything else is rejected with one log line
saying why, counted, and the last-known-good stays in force.

Applying is persist-then-swap: the model file is written and synced, the versions recorded in the
store, and only then is the running scorer switched. A new model or thresholds never changes under
a supervisor's feet: while a red alert is open the swap waits (checked every second) and happens
once none is. A watchlist or a list of persons is applied at once (a stop-payment entry or a
police warning should not wait), and so is a shadow manifest: its challenger only scores beside the model in force and never decides a verdict.

    downlink = Downlink(store, assessor, public_key=load_public_key(path), root=topics.root,
                        region="east", state_dir=data_dir / "downlink", on_change=uplink.reannounce)
    downlink.handle(topic, payload)      # from the uplink's MQTT callback
    downlink.fields()                    # model/watchlist/thresholds versions for status and heartbeat
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from counterguard.core.decision import Thresholds
from counterguard.core.manifest import ManifestError, gateway_manifest_topics, model_bytes, open_envelope
from counterguard.gateway.scoring.model import FraudModel, ModelError
from counterguard.core.lists import KINDS as LIST_KINDS
from counterguard.gateway.scoring.person_lists import ListRejected
from counterguard.gateway.scoring.watchlist import WatchlistRejected

log = logging.getLogger(__name__)

_VERSION = "downlink_{kind}_version"
_MODEL_PATH = "downlink_model_path"
_SHADOW_PATH = "downlink_shadow_path"  # "" once the centre retired the challenger
_THRESHOLDS = "downlink_thresholds"
KEEP_MODELS = 2  # the one in force and the one before it (a quick way back by hand)


@dataclass
class DownlinkStats:
    applied: int = 0
    rejected: int = 0
    replays: int = 0
    last_rejection: str = ""
    rejected_by_kind: dict = field(default_factory=dict)


def _write_synced(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Downlink:
    """Checks and applies signed manifests for one gateway (see the module docstring)."""

    def __init__(self, store, assessor, *, public_key, root: str, region: str, state_dir,
                 red_open=None, on_change=None, poll_s: float = 1.0):
        self.store = store
        self.assessor = assessor
        self.public_key = public_key
        self.root = root
        self.region = region
        self.state_dir = Path(state_dir)
        self.red_open = red_open or (lambda: bool(store.open_alerts("red")))
        self.on_change = on_change or (lambda: None)
        self.poll_s = poll_s
        self.stats = DownlinkStats()
        self._topics = frozenset(gateway_manifest_topics(root, region))
        self._lock = threading.Lock()
        self._pending: dict[str, tuple] = {}  # kind -> (manifest, thing to swap in), waiting for no open red
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._restore()

    # -- start-up --------------------------------------------------------------------------------
    def _restore(self) -> None:
        """Put the last model and thresholds received from the centre back in force after a restart."""
        path = self.store.meta_get(_MODEL_PATH)
        if path:
            try:
                self.assessor.model = FraudModel.load(path)
                log.info("downlink: model %s (manifest v%d) from the centre back in force", self.assessor.model.version,
                         self.version("model"))
            except ModelError as exc:
                log.error("downlink: the model received from the centre cannot be loaded (%s); running on the "
                          "configured model until the centre sends another", exc)
        shadow = self.store.meta_get(_SHADOW_PATH)
        if shadow:
            try:
                self.assessor.shadow = FraudModel.load(shadow)
                log.info("downlink: challenger %s back in shadow", self.assessor.shadow.version)
            except ModelError as exc:
                log.error("downlink: the challenger received from the centre cannot be loaded (%s); scoring "
                          "without one until the centre sends another", exc)
        saved = self.store.meta_get(_THRESHOLDS)
        if saved:
            t = json.loads(saved)
            self.assessor.thresholds = Thresholds(t["amber"], t["red"])

    def start(self) -> "Downlink":
        """Start the watcher that applies a waiting model/thresholds swap once no red alert is open."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="downlink", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    # -- what the centre sees ----------------------------------------------------------------------
    def topics(self) -> tuple[str, ...]:
        return tuple(sorted(self._topics))

    def wants(self, topic: str) -> bool:
        return topic in self._topics

    def version(self, kind: str) -> int:
        if kind == "watchlist":
            return self.assessor.watchlist.version
        if kind in LIST_KINDS:
            persons = self.assessor.persons
            return 0 if persons is None else persons[kind].version
        return int(self.store.meta_get(_VERSION.format(kind=kind), "0"))

    def pending(self) -> list[str]:
        with self._lock:
            return sorted(self._pending)

    def fields(self) -> dict:
        """Versions in force, for the status and heartbeat payloads."""
        return {"model_version": self.assessor.model.version, "watchlist_version": self.assessor.watchlist.version,
                "thresholds_version": self.version("thresholds"), "model_manifest_version": self.version("model"),
                "shadow_version": getattr(self.assessor.shadow, "version", None),
                "shadow_manifest_version": self.version("shadow"),
                "downlink_rejected": self.stats.rejected, "downlink_waiting": self.pending(),
                **({} if self.assessor.persons is None else {"lists": self.assessor.persons.status()})}

    # -- receiving ---------------------------------------------------------------------------------
    def handle(self, topic: str, payload: bytes) -> str:
        """Check and apply one manifest; returns ``applied``, ``waiting``, ``replay`` or ``rejected``.

        Never raises for a bad manifest: it is logged, counted and the last-known-good kept.
        """
        kind = topic.rsplit("/", 1)[-1]
        try:
            manifest = open_envelope(payload, self.public_key, topic=topic)
            held = max(self.version(kind), self._pending_version(kind))
            if manifest["version"] <= held:
                self.stats.replays += 1
                log.info("downlink: %s manifest v%d on %s ignored: version %d is already held (a replay or an "
                         "older retained message)", kind, manifest["version"], topic, held)
                return "replay"
            if kind == "watchlist":
                return self._apply_watchlist(manifest, topic)
            if kind in LIST_KINDS:
                return self._apply_list(kind, manifest, topic)
            if kind == "shadow":
                return self._apply_shadow(manifest, topic)
            prepared = self._prepare_model(manifest) if kind == "model" else self._prepare_thresholds(manifest)
        except (ManifestError, ModelError, WatchlistRejected, ListRejected, ValueError) as exc:
            return self._reject(kind, topic, exc)
        except OSError as exc:  # the SD card refused the model file: keep running on the old one
            return self._reject(kind, topic, f"cannot write the model to {self.state_dir}: {exc}")
        with self._lock:
            self._pending[kind] = (manifest, prepared)
        if self._try_swap(kind, now=bool(manifest.get("rollback"))):
            return "applied"
        log.warning("downlink: %s manifest v%d verified; it takes effect once no red alert is open",
                    kind, manifest["version"])
        return "waiting"

    def _reject(self, kind: str, topic: str, exc) -> str:
        keeping = {"model": f"model {self.assessor.model.version}",
                   "shadow": f"challenger {getattr(self.assessor.shadow, 'version', None) or '(none)'}",
                   "thresholds": f"thresholds {self.assessor.thresholds.amber}/{self.assessor.thresholds.red}",
                   "watchlist": f"watchlist v{self.assessor.watchlist.version}"}.get(kind, "what is in force")
        log.error("downlink: REJECTED %s manifest on %s: %s; keeping %s", kind, topic, exc, keeping)
        # Counted after the log line: whoever watches the count finds the reason already logged.
        self.stats.rejected_by_kind[kind] = self.stats.rejected_by_kind.get(kind, 0) + 1
        self.stats.last_rejection = f"{kind}: {exc}"
        self.stats.rejected += 1
        return "rejected"

    def _pending_version(self, kind: str) -> int:
        with self._lock:
            waiting = self._pending.get(kind)
        return waiting[0]["version"] if waiting else 0

    def _apply_watchlist(self, manifest: dict, topic: str) -> str:
        result = self.assessor.watchlist.apply(manifest)
        self.stats.applied += 1
        log.info("downlink: watchlist v%d applied from %s (%d entries)", result.version, topic, result.size)
        self.on_change()
        return "applied"

    def _apply_list(self, kind: str, manifest: dict, topic: str) -> str:
        """A list of persons, at once like the stop-payment list: a warning must not wait."""
        persons, watchlist = self.assessor.persons, self.assessor.watchlist
        if persons is None:
            raise ManifestError(f"this gateway keeps no {kind}")
        # The entries are hashed with the alliance key: one this gateway does not hold can never match.
        if watchlist.key_version is None or manifest["key_version"] != watchlist.key_version:
            raise ManifestError(f"entries are hashed with alliance key version {manifest['key_version']} but this "
                                f"gateway holds key version {watchlist.key_version}; install the key from the "
                                "gateway's bundle (downlink.watchlist_key)")
        result = persons.apply(kind, manifest)
        if result.waiting_parts:
            log.info("downlink: %s v%d part %d of %d from %s kept; %d to come before it replaces v%d", kind,
                     manifest["version"], manifest.get("part", 1), manifest.get("parts", 1), topic,
                     result.waiting_parts, result.version)
            return "waiting"
        self.stats.applied += 1
        log.info("downlink: %s v%d applied from %s (%d entries)", kind, result.version, topic, result.size)
        self.on_change()
        return "applied"

    def _apply_shadow(self, manifest: dict, topic: str) -> str:
        """A challenger scores beside the model in force from now on (or, retired, no more). At once:
        it never changes a verdict, so it need not wait for open red alerts."""
        challenger = None if manifest.get("retire") else self._prepare_model(manifest, prefix="shadow")
        with self.store.batch():  # persisted first, as a model is
            self.store.meta_set(_VERSION.format(kind="shadow"), manifest["version"])
            self.store.meta_set(_SHADOW_PATH, "" if challenger is None else str(challenger.path))
        self.assessor.shadow = challenger
        for old in self.state_dir.glob("models/shadow-v*"):
            if challenger is None or old.stem != challenger.path.stem:
                old.unlink(missing_ok=True)
        self.stats.applied += 1
        log.info("downlink: shadow manifest v%d from %s: %s", manifest["version"], topic,
                 "challenger retired" if challenger is None else f"challenger {challenger.version} now scores in shadow")
        self.on_change()
        return "applied"

    def _prepare_model(self, manifest: dict, prefix: str = "model") -> FraudModel:
        data = model_bytes(manifest)  # sha256 checked here
        card = manifest["card"]
        if str(card.get("version")) != manifest["model_version"]:
            raise ManifestError(f"model_version {manifest['model_version']!r} differs from the card's version "
                                f"{card.get('version')!r}")
        if card.get("sha256") != manifest["sha256"]:
            raise ManifestError("the card's sha256 is not the model's")
        models = self.state_dir / "models"
        models.mkdir(parents=True, exist_ok=True)
        stem = models / f"{prefix}-v{manifest['version']}"
        # Card first, model second: FraudModel.load reads both and checks one against the other.
        _write_synced(stem.with_suffix(".json"), json.dumps(card, indent=1).encode())
        _write_synced(stem.with_suffix(".tflite"), data)
        try:
            return FraudModel.load(stem.with_suffix(".tflite"))
        except ModelError:
            for suffix in (".json", ".tflite"):
                stem.with_suffix(suffix).unlink(missing_ok=True)
            raise

    def _prepare_thresholds(self, manifest: dict) -> Thresholds:
        return Thresholds(float(manifest["amber"]), float(manifest["red"]))

    # -- swapping ----------------------------------------------------------------------------------
    def _try_swap(self, kind: str, now: bool = False) -> bool:
        """Swap in what waits for ``kind``, once no red alert is open (``now``: a rollback, at once)."""
        with self._lock:
            waiting = self._pending.get(kind)
            if waiting is None:
                return False
            if self.red_open() and not now:
                return False
            manifest, prepared = self._pending.pop(kind)
            version = manifest["version"]
            # Persist first: a power cut after this line restarts on the new version, before it on the old.
            with self.store.batch():
                self.store.meta_set(_VERSION.format(kind=kind), version)
                if kind == "model":
                    self.store.meta_set(_MODEL_PATH, str(prepared.path))
                else:
                    self.store.meta_set(_THRESHOLDS, json.dumps({"amber": prepared.amber, "red": prepared.red}))
            if kind == "model":
                self.assessor.model = prepared
                self._prune_models(prepared.path)
            else:
                self.assessor.thresholds = prepared
        self.stats.applied += 1
        log.info("downlink: %s manifest v%d now in force%s%s", kind, version,
                 " (a ROLLBACK, applied at once)" if manifest.get("rollback") else "",
                 f" (model {prepared.version})" if kind == "model" else f" (amber {prepared.amber}, red {prepared.red})")
        self.on_change()
        return True

    def _prune_models(self, current: Path) -> None:
        models = sorted(self.state_dir.glob("models/model-v*.tflite"),
                        key=lambda p: int(p.stem.rsplit("v", 1)[-1]) if p.stem.rsplit("v", 1)[-1].isdigit() else 0)
        for old in models[:-KEEP_MODELS]:
            if old != current:
                old.unlink(missing_ok=True)
                old.with_suffix(".json").unlink(missing_ok=True)

    def apply_waiting(self) -> list[str]:
        """Swap in whatever was waiting for the open red alerts to close; returns the kinds applied."""
        return [kind for kind in ("model", "thresholds") if self._try_swap(kind)]

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_s):
            if self._pending:
                try:
                    self.apply_waiting()
                except Exception:  # keep watching; the next tick tries again
                    log.exception("downlink: applying a waiting manifest failed")
