"""The composition root: builds the gateway's parts from a validated config, starts them in a
visible order and stops them through one shared stop event. Nothing else opens ports or files.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from pathlib import Path

from counterguard import __version__
from counterguard.core import manifest
from counterguard.core.clock import Clock
from counterguard.core.decision import Thresholds
from counterguard.gateway.branch.escalation import EscalationWatch
from counterguard.gateway.branch.lifecycle import Lifecycle
from counterguard.gateway.config import Config, ConfigError, load_config
from counterguard.gateway.counter.counter_line import STATUS_FILE, CounterLine, LineSupervisor, write_status
from counterguard.gateway.counter.lamps import LampBoard, LampConsole, pin_factory_for
from counterguard.gateway.counter.pipeline import Pipeline
from counterguard.gateway.scoring.assessor import Assessor
from counterguard.gateway.counter.serial_link import SerialLink
from counterguard.gateway.link.downlink import Downlink
from counterguard.gateway.link.upload import EventUpload
from counterguard.gateway.link.uplink import Uplink
from counterguard.gateway.ops import sd_notify
from counterguard.gateway.scoring.model import FraudModel, default_model_path
from counterguard.gateway.scoring.person_lists import PersonLists
from counterguard.gateway.scoring.watchlist import Watchlist
from counterguard.gateway.store.db import Store
from counterguard.hardware.pinmap import default_pinmap_path, load_pinmap

log = logging.getLogger(__name__)

HOUSEKEEPING_S = 24 * 3600
QUIET_S = 0.25  # the counters' load is looked at over at least this long
BUSY_SHARE = 0.5  # counters answering frames more than this share of the time are in a burst


class Gateway:
    """One branch gateway: counter lines in, lamps and uplink out, the store in the middle.

    >>> from counterguard.gateway.config import Config
    >>> gw = Gateway(Config())      # embedded defaults; start() opens ports and connects
    """

    def __init__(self, config: Config, *, pin_factory=None, lamp_stream=None, clock: Clock | None = None):
        self.config = config
        self.clock = clock or Clock()
        self.stop_event = threading.Event()
        self._pin_factory = pin_factory
        self._lamp_stream = lamp_stream
        self.store = None
        self.lines: list[CounterLine] = []
        self.uplink = None
        self.lamps = None
        self.console = None
        self.lifecycle = None
        self.escalation = None
        self.upload = None  # events for learning, when [upload] events is on
        self._load_seen = (time.monotonic(), 0.0, False)  # (when, counter lines' busy_s then, busy?)
        self.downlink = None  # signed models, thresholds and watchlists, when [downlink] is configured
        self.branch_console = None  # the web console on the branch LAN, when [console] enabled
        self.supervisor = None  # restarts a counter line whose thread stopped
        self._told: dict[str, tuple] = {}  # each line's (restarts, given_up, faults) last shown
        self._started = False

    # -- start-up, in order ----------------------------------------------------------------------
    def start(self) -> "Gateway":
        cfg = self.config
        t0 = time.monotonic()
        path = cfg.store_path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.store = Store(path, synchronous=cfg.store.synchronous)
        d = cfg.downlink
        # The centre's key from the bundle, so its hashed stop-payment list matches here.
        try:
            wkey = manifest.load_watchlist_key(d.watchlist_key) if d.watchlist_key else None
            centre_key = manifest.load_public_key(d.centre_public_key) if d.centre_public_key else None
        except manifest.ManifestError as exc:
            raise ConfigError(cfg.source, "downlink", str(exc)) from None
        self.watchlist = Watchlist(self.store, wkey, key_version=d.watchlist_key_version if wkey else None)
        if cfg.watchlist.file and self.watchlist.version == 0:
            # Only a first-boot seed: once the centre has pushed a list, a restart must not undo it.
            self.watchlist.load_file(cfg.watchlist.file)
        elif cfg.watchlist.file:
            log.info("watchlist v%d from the centre kept; %s not loaded", self.watchlist.version, cfg.watchlist.file)
        self.model = FraudModel.load(cfg.model.path or default_model_path())
        t = cfg.thresholds
        if t.amber or t.red:
            self.thresholds = Thresholds(t.amber, t.red)
        elif t.dialogue and self.model.dialogue_thresholds is not None:
            self.thresholds = self.model.dialogue_thresholds
        else:
            if t.dialogue:
                log.warning("thresholds.dialogue is set but model %s has no dialogue thresholds; using its own",
                            self.model.version)
            self.thresholds = self.model.thresholds
        self.persons = PersonLists(self.store)
        self.pipeline = Pipeline(Assessor(self.store, self.watchlist, self.model, self.thresholds,
                                          persons=self.persons),
                                 gateway_id=cfg.gateway.id, clock=self.clock, sector=cfg.gateway.sector)
        self.downlink = None
        if d.centre_public_key:
            from counterguard.core.messages import topic_root

            self.downlink = Downlink(self.store, self.pipeline.assessor,
                                     public_key=centre_key,
                                     root=topic_root(cfg.gateway.region, cfg.gateway.branch, cfg.gateway.id),
                                     region=cfg.gateway.region, state_dir=Path(cfg.gateway.data_dir) / "downlink",
                                     on_change=self._reannounce)

        pinmap = load_pinmap(cfg.lamps.pinmap or default_pinmap_path())
        factory = self._pin_factory or pin_factory_for(cfg.lamps.pins)
        self.lamps = LampBoard.from_pinmap(pinmap, on_acknowledge=self._button_pressed, pin_factory=factory)
        if self._lamp_stream is not None and cfg.lamps.show:
            self.console = LampConsole(self.lamps, self._lamp_stream)
        self.lifecycle = Lifecycle(self.store, self.lamps, self.clock, gateway_id=cfg.gateway.id,
                                   wake=self._wake_uplink, assessor=self.pipeline.assessor)
        self.lifecycle.restore_lamps()
        if cfg.console.enabled:
            self.branch_console = self._bind_console()

        u = cfg.upload
        self.upload = EventUpload(self.store, self.watchlist.hash, gateway_id=cfg.gateway.id,
                                  batch_events=u.batch_events, interval_s=u.interval_s,
                                  counters_busy=self._counters_busy,
                                  wait_for_quiet_s=u.wait_for_quiet_s) if u.events else None
        m = cfg.mqtt
        tls = (m.ca_file, m.cert_file, m.key_file) if m.ca_file else None
        self.uplink = Uplink(
            self.store, self.watchlist, host=m.host, port=m.port, gateway_id=cfg.gateway.id,
            region=cfg.gateway.region, branch=cfg.gateway.branch, keepalive=m.keepalive,
            heartbeat_s=m.heartbeat_s, republish_after_s=m.republish_after_s,
            backoff_min=m.backoff_min_s, backoff_max=m.backoff_max_s, tls=tls,
            status_fields=self._status_fields, heartbeat_fields=self._heartbeat_fields,
            downlink=self.downlink, upload=self.upload,
            last_answer=lambda: max((line.answered_at for line in self.lines), default=0.0),
        )
        self.uplink.start()
        if self.downlink is not None:
            self.downlink.start()
        self.escalation = EscalationWatch(self.store, self.lamps, self.lifecycle, self.clock,
                                          after_s=cfg.supervisor.escalate_after_s, gateway_id=cfg.gateway.id,
                                          wake=self._wake_uplink).start(self.stop_event)

        for port in cfg.serial:
            link = SerialLink(port.path, baudrate=port.baudrate, name=port.name or None)
            line = CounterLine(link, self.pipeline, heartbeat_s=cfg.link.heartbeat_s,
                               silent_after_s=cfg.link.silent_after_s, on_verdicts=self._show,
                               on_alerts=lambda alerts: self.uplink.wake(), name=port.name or port.path)
            self.lines.append(line)
            line.start(self.stop_event)
        self._write_line_status()
        self.supervisor = LineSupervisor(self.lines, on_change=self._line_changed).start(self.stop_event)
        self._housekeeping = threading.Thread(target=self._housekeep, name="housekeeping", daemon=True)
        self._housekeeping.start()
        if self.branch_console is not None:
            self.branch_console.start()
        self._started = True
        sd_notify.Watchdog(healthy=self._healthy).start(self.stop_event)
        sd_notify.ready(f"gateway {cfg.gateway.id}: {len(self.lines)} counter line(s)")
        log.info("gateway %s ready in %.2f s: %d counter line(s), model %s (%s), watchlist v%d",
                 cfg.gateway.id, time.monotonic() - t0, len(self.lines), self.model.version,
                 self.model.runtime, self.watchlist.version)
        return self

    def _bind_console(self):
        """Open the console's port before anything else runs, so a busy port stops start-up cleanly."""
        from counterguard.gateway.branch.console.server import BranchConsole
        from counterguard.gateway.questions import QuestionsError

        c = self.config.console
        try:
            return BranchConsole.from_config(self.config, self.store, self.lifecycle, self.questions)
        except (OSError, QuestionsError) as exc:
            self.lamps.close()
            self.store.close()
            if isinstance(exc, QuestionsError):
                raise ConfigError(self.config.source, "supervisor.questions_file", str(exc)) from None
            raise ConfigError(self.config.source, "console.port",
                              f"cannot listen on {c.listen}:{c.port}: {exc.strerror or exc}") from None

    def _housekeep(self) -> None:
        """Once at start and then daily: drop old green events; alerts and unsynced rows stay."""
        while True:
            try:
                gone = self.store.purge(time.time(), keep_days=self.config.store.keep_days,
                                        keep_unuploaded=self.upload is not None)
                if any(gone.values()):
                    log.info("housekeeping: removed %d old green events, %d receipted outbox rows",
                             gone["events"], gone["outbox"])
            except Exception:
                log.exception("housekeeping failed; will try again tomorrow")
            if self.stop_event.wait(HOUSEKEEPING_S):
                return

    def stop(self) -> None:
        """Stop counter lines first (no new verdicts), then the uplink (says `stopped`), then the rest."""
        self.stop_event.set()
        if self.supervisor is not None:
            self.supervisor.join(5)  # before the lines, so none is restarted on the way down
        for line in self.lines:
            line.join(5)
            line.link.close()
        if self.lines:
            self._write_line_status()
        if getattr(self, "_housekeeping", None) is not None:
            self._housekeeping.join(5)
        if self.branch_console is not None:
            self.branch_console.stop()
        if self.escalation is not None:
            self.escalation.join(5)
        if self.downlink is not None:
            self.downlink.stop()
        if self.uplink is not None:
            self.uplink.stop()
        if self.lamps is not None:
            self.lamps.close()
        if self.store is not None:
            self.store.close()
        self._started = False

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- people ----------------------------------------------------------------------------------
    def _show(self, verdicts) -> None:
        for v in verdicts:
            self.lamps.show_verdict(v.counter, v.level)

    def _button_pressed(self) -> None:
        self.acknowledge(by="supervisor", via="button")

    def acknowledge(self, alert_id: str | None = None, *, counter: int | None = None,
                    by: str = "supervisor", via: str = "console"):
        """Acknowledge an open alert (the oldest red, unless one is named); lamps and uplink follow.
        UnknownAlert (a mistyped id) goes to the caller, who can tell the supervisor."""
        return self.lifecycle.acknowledge(alert_id, counter=counter, by=by, via=via)

    def record_outcome(self, alert_id: str, outcome: str, *, note: str = "", by: str, via: str = "console",
                       answers=None, handled_at=None):
        """Record what happened with an acknowledged alert, the customer's answers to the caring
        questions ({key: yes | no | declined}) if any, and which level handled it (1 teller,
        2 supervisor, 3 police), and close it (docs/supervisor.md)."""
        return self.lifecycle.record_outcome(alert_id, outcome, note=note, by=by, via=via, answers=answers,
                                             questions=self.questions if answers else None, handled_at=handled_at)

    @functools.cached_property
    def questions(self):
        """The branch's caring questions, read once (start-up has already checked the file)."""
        from counterguard.gateway.questions import load_questions

        return load_questions(self.config.supervisor.questions_file)

    def _healthy(self) -> bool:
        """For the systemd watchdog: every counter line running or being restarted by the supervisor;
        false once one is given up on, so systemd restarts the service."""
        return self.supervisor is not None and self.supervisor.healthy()

    def _line_changed(self, line) -> None:
        """A counter line was restarted or given up on: its counters' lamps flash the fault, and the
        centre (status) and `counterguard doctor` (status file) are told. A failed turn the line
        survived goes to doctor only (the heartbeat counts it too)."""
        now = (line.restarts, line.given_up, line.faults)
        told = self._told.get(line.name, (0, False, 0))
        if line.given_up or line.restarts != told[0]:
            for counter in self._counters_of(line):
                self.lamps.counter_fault(counter)
        if now != told:
            self._told[line.name] = now
            self._write_line_status()
            if now[:2] != told[:2]:
                self._reannounce()

    def _counters_of(self, line) -> list[int]:
        """The counters a line has carried verdicts for; before any, the line's place in the config
        (the first [[serial]] port is counter 1, as the pin maps and `doctor` count them)."""
        return sorted(line.counters) or [self.lines.index(line) + 1]

    def _write_line_status(self) -> None:
        try:
            write_status(self.config.store_path.parent / STATUS_FILE, self.lines, gateway_id=self.config.gateway.id)
        except OSError as exc:  # the store's own disk will say more; the lines go on regardless
            log.warning("cannot write the counter-line status for doctor: %s", exc)

    def _reannounce(self) -> None:
        """A new model, thresholds or watchlist is in force: tell the centre (status is republished)."""
        if self.uplink is not None:
            self.uplink.reannounce()

    def _counters_busy(self) -> bool:
        """The counter lines spent more than BUSY_SHARE of the time since the last look (at least
        QUIET_S ago) answering frames: a burst, so the event upload waits. A counter taking an event
        every few seconds, or several a second, is far below that."""
        now = time.monotonic()
        spent = sum(line.busy_s for line in self.lines)
        then, spent_then, busy = self._load_seen
        if now - then >= QUIET_S:
            busy = (spent - spent_then) / (now - then) > BUSY_SHARE
            self._load_seen = (now, spent, busy)
        return busy

    def _wake_uplink(self) -> None:
        if self.uplink is not None:
            self.uplink.wake()

    # -- what the centre sees --------------------------------------------------------------------
    def _status_fields(self) -> dict:
        fields = {
            "model_version": self.pipeline.assessor.model.version,  # the centre may have swapped the model
            "watchlist_version": self.watchlist.version,
            "software_version": __version__,
            "counter_lines": {line.name: {"thread": line.thread_state, "restarts": line.restarts}
                              for line in self.lines},
        }
        if self.downlink is not None:
            fields.update(self.downlink.fields())
        return fields

    def _heartbeat_fields(self) -> dict:
        return {
            **self._status_fields(),
            "verdicts": dict(self.pipeline.counts),
            "links": {line.name: line.health() for line in self.lines},
            **({"events_queued": self.upload.queued_events} if self.upload is not None else {}),
        }


def check_ready(config: Config) -> None:
    """Fail before starting, naming the key, on settings that point at files that are not there;
    every such setting is reported at once (ConfigErrors, one line each)."""
    errors = []
    for key, value in (("model.path", config.model.path), ("lamps.pinmap", config.lamps.pinmap),
                       ("watchlist.file", config.watchlist.file),
                       ("downlink.centre_public_key", config.downlink.centre_public_key),
                       ("downlink.watchlist_key", config.downlink.watchlist_key),
                       ("supervisor.questions_file", config.supervisor.questions_file),
                       ("console.cert_file", config.console.enabled and config.console.cert_file),
                       ("console.key_file", config.console.enabled and config.console.key_file)):
        if value and not Path(value).exists():
            errors.append(ConfigError(config.source, key, f"file {value} does not exist"))
    if config.supervisor.questions_file and Path(config.supervisor.questions_file).exists():
        from counterguard.gateway.questions import QuestionsError, load_questions

        try:
            load_questions(config.supervisor.questions_file)
        except QuestionsError as exc:
            errors.append(ConfigError(config.source, "supervisor.questions_file", str(exc)))
    if errors:
        from counterguard.gateway.config import ConfigErrors

        raise ConfigErrors(errors, config)


def serve(config_path=None, *, lamp_stream=None) -> int:
    """``counterguard run``: the gateway from ``config_path`` (embedded defaults if None) until
    SIGTERM or Ctrl-C."""
    import signal

    config = load_config(config_path) if config_path else Config()
    check_ready(config)
    if not config.serial:
        log.warning("no [[serial]] port configured: the gateway has no counter lines")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    gateway = Gateway(config, lamp_stream=lamp_stream)
    gateway.start()
    try:
        stop.wait()
    finally:
        gateway.stop()
    return 0
