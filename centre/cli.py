"""``counterguard centre ...``: run the anti-fraud centre and push manifests to the gateways.

| command | what it does |
|---|---|
| `centre run` | intake workers + live dashboard, until SIGTERM or Ctrl-C |
| `centre push-watchlist --target T --add ACCOUNT --remove ACCOUNT [--file FILE]` | change the stop-payment list and push it |
| `centre push-list KIND --add VALUE --remove VALUE [--file FILE]` (KIND: warned or restricted) | change a list of persons and push it as signed deltas |
| `centre push-model --target T MODEL.tflite` | push a model and its card |
| `centre push-thresholds --target T --amber A --red R` | push amber/red thresholds |
| `centre rollout` | which gateways have applied which pushed version |
| `centre fleet` | every gateway: online / offline / stopped / silent, heartbeat, outbox, versions |
| `centre accuracy [--by branch]` | precision of red and amber warnings |
| `centre quarantine` | malformed messages and why they were refused |
| `centre keys DIR` | create a signing key pair and a watchlist key |
| `centre dashboard-user NAME` | hash an analyst's dashboard password: a line for `[dashboard.users]` |
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import signal
import sys
import threading
import time
from pathlib import Path

from counterguard.centre.config import (
    CentreConfig,
    CentreConfigError,
    analyst_name_problem,
    load_config,
    toml_key,
)

log = logging.getLogger(__name__)
_ACCOUNT = re.compile(r"[0-9]{6,34}")
# Simulated events 'centre train' adds by default: in the rehearsal (bench/learn_sim.py) they kept the
# fleet's challengers within 2 points of a model trained on every true label on both worlds.
SIM_EVENTS = 20_000


class CommandError(Exception):
    """A user error; printed as one line and exit status 2."""


def _config(args) -> CentreConfig:
    cfg = load_config(args.config) if args.config else CentreConfig()
    if args.host:
        cfg.broker.host = args.host
    if args.port:
        cfg.broker.port = args.port
    if args.store:
        cfg.store.url = args.store
    return cfg


def _open_store(cfg: CentreConfig, *, create: bool = True):
    """The centre's store; a reader (``create=False``) refuses a SQLite file that is not there rather
    than report on a new empty one (a mistyped --store)."""
    from counterguard.centre.store import open_store

    url = str(cfg.store.url)
    if not create and not url.startswith(("postgresql://", "postgres://")):
        path = Path(url[len("sqlite:///"):] if url.startswith("sqlite:///") else url)
        if not path.is_file():
            raise CommandError(f"{path}: no centre store here; check --store or [store] url in --config "
                               "('counterguard centre run' creates it, as does a first push with --create)")
    return open_store(url)


# -- run ------------------------------------------------------------------------------------------
def _check_dashboard_login(cfg: CentreConfig, config_file) -> None:
    """Every branch's alerts are on the dashboard: beyond this machine, only for analysts who log in."""
    from counterguard.core.weblogin import is_loopback

    if cfg.dashboard.users or is_loopback(cfg.dashboard.host):
        return
    where = config_file or "the centre config file"
    raise CommandError(f"{where}: the dashboard listens on {cfg.dashboard.host!r} but [dashboard] users is empty, "
                       "so anyone who can reach it would see every branch's alerts. Add an analyst: run "
                       "'counterguard centre dashboard-user NAME' and paste the line it prints under "
                       f"[dashboard.users] in {where}; or set [dashboard] host = \"127.0.0.1\", or run --no-dashboard")


def _run(args) -> int:
    from counterguard.centre.ingest import IngestWorker, default_client_id
    from counterguard.centre.web import Dashboard

    cfg = _config(args)
    if args.workers:
        cfg.ingest.workers = args.workers
    if args.web_port is not None:
        cfg.dashboard.port = args.web_port
    if not args.no_dashboard:
        _check_dashboard_login(cfg, args.config)
    if cfg.broker.cert and cfg.ingest.workers > 1:
        # The provisioned broker makes a certificate's CN the client id: two connections on one
        # certificate would keep throwing each other off, and each time the centre's will says offline.
        raise CommandError(f"{cfg.ingest.workers} workers on one client certificate ([broker] cert "
                           f"{cfg.broker.cert}): the broker gives each certificate one connection. Run one worker "
                           "per process, each with its own certificate ('counterguard provision worker --id ...')")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    base_id = cfg.ingest.client_id or default_client_id()
    workers = []
    dashboard = dashboard_store = None
    try:
        for i in range(cfg.ingest.workers):
            client_id = base_id if cfg.ingest.workers == 1 else f"{base_id}-{i + 1}"
            workers.append(IngestWorker(_open_store(cfg), host=cfg.broker.host, port=cfg.broker.port,
                                        client_id=client_id, share=cfg.ingest.share or None,
                                        username=cfg.broker.username or None, password=cfg.broker.password(),
                                        tls=cfg.broker.tls()).start())
        if not args.no_dashboard:
            dashboard_store = _open_store(cfg)
            try:
                dashboard = Dashboard(dashboard_store, host=cfg.dashboard.host, port=cfg.dashboard.port,
                                      heartbeat_s=cfg.dashboard.heartbeat_s, users=cfg.dashboard.users,
                                      intake=workers).start()
            except OSError as exc:
                raise CommandError(f"the dashboard cannot listen on {cfg.dashboard.host}:{cfg.dashboard.port} "
                                   f"({exc.strerror or exc}); choose another with --web-port or [dashboard] port, "
                                   "or run this worker with --no-dashboard") from None
        print(f"counterguard centre: {len(workers)} worker(s) on {cfg.broker.host}:{cfg.broker.port}, "
              f"store {workers[0].store.where}" + (f", dashboard {dashboard.url}" if dashboard else ""), flush=True)
        _keep_running(args, cfg, workers, stop)
    except ConnectionError as exc:
        raise CommandError(_broker_hint(exc, cfg)) from None
    finally:
        if dashboard is not None:
            dashboard.stop()
        if dashboard_store is not None:
            dashboard_store.close()
        for i, w in enumerate(workers):
            w.stop(say_offline=(i == len(workers) - 1))
            w.store.close()
    return 0


class _CanaryGuard:
    """Rolls a canary group back when it leaves its band (centre/canary.py); needs the signing key."""

    def __init__(self, cfg: CentreConfig):
        from dataclasses import asdict

        from counterguard.centre.canary import Band

        self.cfg = cfg
        self.band = Band(**asdict(cfg.canary))
        self.next_check = 0.0
        self._warned = False

    def tick(self, store) -> None:
        if time.monotonic() < self.next_check:
            return
        self.next_check = time.monotonic() + self.band.check_every_s
        from counterguard.centre import canary

        try:
            if not store.canaries(active_only=True):
                return
            triggered = canary.check(store, self.band, now=time.time())
            if not triggered:
                return
            if not self.cfg.signing.key:
                if not self._warned:
                    log.error("centre: a canary left its band but this centre has no [signing] key to roll it "
                              "back; run 'counterguard centre rollback' by hand")
                    self._warned = True
                return
            downlink = _downlink(self.cfg, store)
            for row, reason in triggered:
                _publish(self.cfg, canary.rollback(store, downlink, row, reason=reason, now=time.time()))
        except Exception as exc:  # the intake goes on; the next tick tries again
            log.warning("centre: canary check failed: %s", exc)


class _ListRepair:
    """Sends the whole list of persons to a gateway that reports a gap or stays behind (a delta
    missed while it was away: only the newest delta is retained on the topic); needs the signing key."""

    CHECK_EVERY_S = 30.0

    def __init__(self, cfg: CentreConfig):
        self.cfg = cfg
        self.next_check = 0.0
        self.sent: dict = {}
        self._key = None

    def tick(self, store) -> None:
        if time.monotonic() < self.next_check:
            return
        self.next_check = time.monotonic() + self.CHECK_EVERY_S
        from counterguard.centre.downlink import publish_retained
        from counterguard.centre.person_lists import PersonListPush
        from counterguard.core import manifest as signed

        try:
            lists = PersonListPush(store, None, key=None, key_version=self.cfg.signing.key_version)
            due = lists.repairs(sent=self.sent)
            if not due:
                return
            if not self.cfg.signing.key:
                log.warning("centre: %d gateway(s) are behind on a list of persons, but this centre has no signing "
                            "key ([signing] key) to send them the whole list", len(due))
                self.next_check = time.monotonic() + 3600
                return
            if self._key is None:
                self._key = signed.load_private_key(self.cfg.signing.key)
            lists.signing_key = self._key
            for gateway_id, kind in due:
                parts = lists.snapshot(kind, gateway_id)
                # Not retained: the gateway is online (its status said so) and this repeats a version.
                publish_retained(self.cfg.broker.host, self.cfg.broker.port, [(p.topic, p.envelope) for p in parts],
                                 username=self.cfg.broker.username or None, password=self.cfg.broker.password(),
                                 tls=self.cfg.broker.tls(), retain=False)
                self.sent[(gateway_id, kind)] = time.time()
                log.info("centre: sent %s v%d whole (%d part(s)) to gateway %s, which was behind", kind,
                         parts[0].version, len(parts), gateway_id)
        except Exception as exc:  # the intake goes on; the next check tries again
            log.warning("centre: could not send a list of persons to a gateway behind on it: %s", exc)


def _keep_running(args, cfg: CentreConfig, workers, stop: threading.Event) -> None:
    """Until stopped: report the intake every ``--report-every`` seconds, and drop uploaded events past
    ``[learning] keep_days`` at start and then hourly (one worker's store connection is its own thread's)."""
    next_purge = 0.0
    guard, repair = _CanaryGuard(cfg), _ListRepair(cfg)
    with _open_store(cfg) as housekeeping:
        while True:
            guard.tick(housekeeping)
            repair.tick(housekeeping)
            if time.monotonic() >= next_purge:
                next_purge = time.monotonic() + 3600
                try:
                    gone = housekeeping.purge_events(cfg.learning.keep_days)
                    if gone:
                        log.info("centre: dropped %d uploaded events older than %d days", gone, cfg.learning.keep_days)
                except Exception as exc:  # the intake goes on; retention is tried again in an hour
                    log.warning("centre: could not drop old uploaded events: %s", exc)
            if stop.wait(min(args.report_every or 3600, max(0.1, next_purge - time.monotonic()),
                             max(0.1, guard.next_check - time.monotonic()),
                             max(0.1, repair.next_check - time.monotonic()))):
                return
            if args.report_every:
                totals = [w.stats for w in workers]
                print(json.dumps({"stored": sum(s.stored for s in totals), "duplicates": sum(s.duplicates for s in totals),
                                  "quarantined": sum(s.quarantined for s in totals),
                                  "events": sum(s.events for s in totals)}), flush=True)


def _serve(args) -> int:
    """``centre serve --config``: the backend the config names. engine = "mqtt" is ``centre run``;
    engine = "jetstream" runs workers that share a NATS cluster's intake stream (docs/cluster.md)."""
    cfg = _config(args)
    if cfg.broker.engine != "jetstream":
        return _run(args)
    from counterguard.centre.jetstream import JetStreamWorker
    from counterguard.centre.ingest import default_client_id
    from counterguard.centre.web import Dashboard

    if args.workers:
        cfg.ingest.workers = args.workers
    if args.web_port is not None:
        cfg.dashboard.port = args.web_port
    if not args.no_dashboard:
        _check_dashboard_login(cfg, args.config)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    base_id = cfg.ingest.client_id or default_client_id()
    workers, dashboard, dashboard_store = [], None, None
    try:
        for i in range(cfg.ingest.workers):
            workers.append(JetStreamWorker(_open_store(cfg), servers=cfg.broker.servers, tls=cfg.broker.tls(),
                                           client_id=f"{base_id}-{i + 1}", replicas=min(3, len(cfg.broker.servers))
                                           ).start())
        if not args.no_dashboard:
            dashboard_store = _open_store(cfg)
            try:
                dashboard = Dashboard(dashboard_store, host=cfg.dashboard.host, port=cfg.dashboard.port,
                                      heartbeat_s=cfg.dashboard.heartbeat_s, users=cfg.dashboard.users,
                                      intake=workers).start()
            except OSError as exc:
                raise CommandError(f"the dashboard cannot listen on {cfg.dashboard.host}:{cfg.dashboard.port} "
                                   f"({exc.strerror or exc}); choose another with --web-port or [dashboard] port, "
                                   "or run this worker with --no-dashboard") from None
        print(f"counterguard centre: {len(workers)} worker(s) on the intake stream of {', '.join(cfg.broker.servers)}, "
              f"store {workers[0].store.where}" + (f", dashboard {dashboard.url}" if dashboard else ""), flush=True)
        _keep_running(args, cfg, workers, stop)
    except ConnectionError as exc:
        raise CommandError(str(exc)) from None
    finally:
        if dashboard is not None:
            dashboard.stop()
        if dashboard_store is not None:
            dashboard_store.close()
        for w in workers:
            w.stop()
            w.store.close()
    return 0


# -- pushes ---------------------------------------------------------------------------------------
def _downlink(cfg: CentreConfig, store, *, need_watchlist_key: bool = False):
    from counterguard.centre.downlink import Downlink
    from counterguard.core import manifest as signed

    if not cfg.signing.key:
        raise CommandError("pushing needs the centre signing key: --signing-key FILE or [signing] key in --config")
    try:
        key = signed.load_private_key(cfg.signing.key)
        wl_key = signed.load_watchlist_key(cfg.signing.watchlist_key) if cfg.signing.watchlist_key else None
    except signed.ManifestError as exc:
        raise CommandError(str(exc)) from None
    if need_watchlist_key and wl_key is None:
        raise CommandError("accounts are hashed with the watchlist key: --watchlist-key FILE or "
                           "[signing] watchlist_key in --config")
    return Downlink(store, key, watchlist_key=wl_key, key_version=cfg.signing.key_version)


def _signing_config(args) -> CentreConfig:
    cfg = _config(args)
    if args.signing_key:
        cfg.signing.key = args.signing_key
    if getattr(args, "watchlist_key", None):
        cfg.signing.watchlist_key = args.watchlist_key
    return cfg


def _accounts_file(path) -> list[str]:
    """A plain list of accounts: one per line, ``#`` starts a comment (the gateway's file format)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"{path}: cannot read the list: {getattr(exc, 'strerror', None) or exc}") from None
    accounts = []
    for number, line in enumerate(text.splitlines(), 1):
        entry = line.split("#", 1)[0].strip()
        if entry and not _ACCOUNT.fullmatch(entry):
            raise CommandError(f"{path}, line {number}: {entry!r} is not an account number of 6 to 34 digits")
        if entry:
            accounts.append(entry)
    return accounts


def _publish(cfg: CentreConfig, pushes) -> None:
    from counterguard.centre.downlink import publish_retained

    try:
        publish_retained(cfg.broker.host, cfg.broker.port, [(p.topic, p.envelope) for p in pushes],
                         username=cfg.broker.username or None, password=cfg.broker.password(), tls=cfg.broker.tls())
    except ConnectionError as exc:
        made = ", ".join(f"{p.kind} version {p.version} for {p.target}" for p in pushes)
        raise CommandError(f"{made}: recorded but not published: {_broker_hint(exc, cfg)}; push again when the broker "
                           "is back (the next version supersedes it)") from None
    for p in pushes:
        print(json.dumps({"kind": p.kind, "version": p.version, "target": p.target, "topic": p.topic, **p.summary}),
              flush=True)


def _broker_hint(exc: Exception, cfg: CentreConfig) -> str:
    """The connection error, with the likely cause when nothing listens at that address."""
    refused = "refused" in str(exc).lower()
    return f"{exc} (is mosquitto running on {cfg.broker.host}:{cfg.broker.port}?)" if refused else str(exc)


def _push(args, build, *, need_watchlist_key: bool = False, report: bool = False) -> int:
    """Build manifests with the signing key, record and publish them; ``report``: one line each."""
    from counterguard.centre.downlink import DownlinkError

    cfg = _signing_config(args)
    # A push to a mistyped store would start again at version 1, which every gateway ignores as old:
    # only a first push, asked for with --create, may make the store (issue 20).
    store = _open_store(cfg, create=getattr(args, "create", False))
    try:
        downlink = _downlink(cfg, store, need_watchlist_key=need_watchlist_key)
        try:
            pushed = build(downlink)
        except DownlinkError as exc:
            raise CommandError(str(exc)) from None
        pushed = pushed if isinstance(pushed, list) else [pushed]
        _publish(cfg, pushed)
        for p in pushed if report else ():
            print(f"pushed {p.kind} v{p.version} to {p.target}" + (" (rollback)" if p.summary.get("rollback") else ""))
    finally:
        store.close()
    return 0


def _push_watchlist(args) -> int:
    adds = list(args.add or [])
    if args.file:
        adds += _accounts_file(args.file)
    needs_key = bool(adds or args.remove)
    return _push(args, lambda d: d.push_watchlist(args.target, add=adds, remove=args.remove or [],
                                                  add_hashes=args.add_hash or [], remove_hashes=args.remove_hash or [],
                                                  replace=bool(args.file)), need_watchlist_key=needs_key)


_LIST_NAMES = {"warned": "warned_persons", "restricted": "restricted_persons"}


def _push_list(args) -> int:
    """``centre push-list warned|restricted``: values are verified and hashed here; every bad one is
    named (with its line, from a file) and nothing is pushed until all are good."""
    from counterguard.centre import person_lists as pl
    from counterguard.core.lists import ListError

    kind = _LIST_NAMES.get(args.kind, args.kind)
    if args.confirmed_sales and kind != "restricted_persons":
        raise CommandError("--confirmed-sales puts persons on the restricted list: push-list restricted")
    if not (args.add or args.remove or args.file or args.confirmed_sales):
        raise CommandError("nothing to push: give --add VALUE, --remove VALUE, --file FILE or --confirmed-sales")
    if args.replace and not args.file:
        raise CommandError("--replace pushes the list in --file as the whole list: give --file")
    label = args.category if kind == "warned_persons" else args.source
    if kind == "warned_persons" and args.source or kind == "restricted_persons" and args.category:
        raise CommandError("--category is for the warned list, --from for the restricted list")
    start, until = pl.default_days(kind, args.days, args.until)
    cfg = _signing_config(args)
    store = _open_store(cfg, create=args.create)  # as _push: a typo must not start the versions afresh
    try:
        downlink = _downlink(cfg, store, need_watchlist_key=True)
        key = downlink.watchlist_key
        problems, add, remove = [], [], []
        for n, value in enumerate(args.add or [], 1):
            try:
                add.append(pl.make_entry(kind, key, value, args.id_type, label=label, start=start, until=until))
            except ListError as exc:
                problems.append(f"--add number {n}: {exc}")
        for n, value in enumerate(args.remove or [], 1):
            try:
                remove.append(pl.hash_value(key, value, args.id_type))
            except ValueError as exc:
                problems.append(f"--remove number {n}: value {exc}")
        if args.file:
            try:
                add += pl.read_entries(args.file, kind, key, label=label, start=start, until=until)
            except pl.ListInputError as exc:
                problems += exc.problems
        if args.confirmed_sales:
            held = {e[0] for e in store.person_entries(kind)}
            for sale in pl.confirmed_sales(store):
                if sale["hash"] not in held:
                    print(f"adding the person of alert {sale['alert_id']} at {sale['gateway_id']} "
                          f"(card sale confirmed; source {sale['source']})", file=sys.stderr)
                    add.append([sale["hash"], args.source or sale["source"], start, until])
        if problems:
            raise CommandError(f"nothing pushed; {len(problems)} problem(s):\n  " + "\n  ".join(problems))
        pushes = pl.PersonListPush(store, downlink.signing_key, key=key, key_version=cfg.signing.key_version).push(
            kind, add=add, remove=remove, full=bool(args.replace))
        _publish(cfg, pushes)
    finally:
        store.close()
    return 0


def _push_model(args) -> int:
    return _push(args, lambda d: d.push_model(args.target, args.model, card_path=args.card,
                                              model_version=args.model_version, shadow=args.shadow))


def _retire_shadow(args) -> int:
    return _push(args, lambda d: d.retire_shadow(args.target))


def _compare(args) -> int:
    from counterguard.centre import comparison

    cfg = _config(args)
    with _open_store(cfg, create=False) as store:
        try:
            report = comparison.compare(store, now=time.time(), honest_after_days=cfg.learning.honest_after_days,
                                        since_days=args.since, challenger=args.challenger)
        except comparison.CompareError as exc:
            raise CommandError(str(exc)) from None
    print(json.dumps(report, indent=1) if args.json else comparison.text(report))
    return 0


def _drift(args) -> int:
    from counterguard.centre import drift

    cfg = _config(args)
    reference = None
    if args.card:
        try:
            card = json.loads(Path(args.card).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CommandError(f"{args.card}: cannot read the model card: {exc}") from None
        reference = card.get("reference") if isinstance(card, dict) else None
        if reference is None:
            raise CommandError(f"{args.card}: the card has no training reference (cards written by "
                               "'counterguard centre train' do); leave --card out to compare with the fleet's past")
    with _open_store(cfg, create=False) as store:
        try:
            report = drift.drift(store, now=time.time(), window_days=args.window_days,
                                 reference_days=args.reference_days, reference=reference)
        except drift.DriftError as exc:
            raise CommandError(str(exc)) from None
    print(json.dumps(report, indent=1) if args.json else drift.text(report))
    return 0


def _promote(args) -> int:
    from counterguard.centre import canary

    if args.canary is None and not args.all:
        raise CommandError("say where: --canary PERCENT (a sample of gateways first) or --all")
    from counterguard.centre.comparison import promotion_problems

    cfg = _config(args)
    with _open_store(cfg, create=False) as store:
        problems = promotion_problems(store, now=time.time(), honest_after_days=cfg.learning.honest_after_days,
                                      challenger=args.challenger)
    if problems and not args.without_judgement:
        raise CommandError("the challenger's shadow is not judged yet: " + "; ".join(problems)
                           + " ('centre compare' shows the figures; --without-judgement REASON promotes anyway)")
    if problems:
        log.warning("centre: promoting without a judged shadow (%s): %s", args.without_judgement, "; ".join(problems))
        print(f"promoting without a judged shadow, because: {args.without_judgement}", file=sys.stderr)

    def build(downlink):
        try:
            return canary.promote(downlink.store, downlink, percent=args.canary, everywhere=args.all,
                                  version=args.challenger, now=time.time())
        except canary.CanaryError as exc:
            raise CommandError(str(exc)) from None
    return _push(args, build, report=True)


def _rollback(args) -> int:
    from counterguard.centre import canary

    def build(downlink):
        active = downlink.store.canaries(active_only=True)
        if not active:
            raise CommandError("no canary is running: nothing to roll back (to go back fleet-wide, push the earlier "
                               "model with 'counterguard centre push-model --target all')")
        return [p for row in active
                for p in canary.rollback(downlink.store, downlink, row, reason=f"by hand: {args.reason}",
                                         now=time.time())]
    return _push(args, build, report=True)


def _canaries(args) -> int:
    def render(rows):
        lines = [f"{'id':>3} {'challenger':<22} {'state':<12} {'gateways':<30} reason"]
        for r in rows:
            lines.append(f"{r['id']:>3} {r['challenger']:<22} {r['state']:<12} {', '.join(r['gateways'])[:30]:<30} "
                         f"{r['reason'] or '-'}")
        return "\n".join(lines)
    return _report(args, lambda store: store.canaries(), render)


def _push_thresholds(args) -> int:
    return _push(args, lambda d: d.push_thresholds(args.target, amber=args.amber, red=args.red))


# -- reports --------------------------------------------------------------------------------------
def _report(args, build, render) -> int:
    cfg = _config(args)
    store = _open_store(cfg, create=False)
    try:
        data = build(store)
    finally:
        store.close()
    print(json.dumps(data, ensure_ascii=False, default=str, indent=1) if args.json else render(data), flush=True)
    return 0


def _lists(args) -> int:
    from counterguard.centre.person_lists import summary

    def render(rows):
        lines = []
        for r in rows:
            came = ", ".join(f"{label} {n}" for label, n in r["by_label"].items()) or "-"
            lines.append(f"{r['kind']}: version {r['version']}, {r['in_force']} in force ({came}), "
                         f"{r['expired']} past their last day")
            lines.append(f"  gateways at this version: {len(r['gateways_current'])}; behind: "
                         f"{', '.join(r['gateways_behind']) or 'none'}; reporting a gap: "
                         f"{', '.join(r['gateways_with_gap']) or 'none'}")
        return "\n".join(lines)
    return _report(args, summary, render)


def _rollout(args) -> int:
    from counterguard.centre.downlink import rollout

    def render(rows):
        lines = [f"{'kind':<11} {'target':<22} {'version':>7}  applied  waiting"]
        for r in rows:
            lines.append(f"{r['kind']:<11} {r['target']:<22} {r['version']:>7}  {len(r['applied']):>7}  "
                         f"{', '.join(r['pending']) or '-'}")
        return "\n".join(lines)
    return _report(args, rollout, render)


def _drift_cell(d) -> str:
    if not d or not d.get("judged"):
        return "-"
    flag = " WARNING: " + "; ".join(d["warnings"]) if d["warnings"] else ""
    return f"{d['worst_feature']} {d['worst_psi']:.2f}{flag}"


def _fleet(args) -> int:
    from counterguard.centre import drift, fleet

    def build(store):
        now = time.time()
        try:
            drifted = drift.worst(drift.drift(store, now=now))
        except drift.DriftError:  # too few uploaded events yet for a reference
            drifted = {}
        return [{**g, "presence": fleet.presence(g, now=now, heartbeat_s=args.heartbeat_s),
                 "drift": drifted.get(g["gateway_id"])} for g in store.gateways()]

    def render(rows):
        lines = [f"{'gateway':<16} {'region/branch':<20} {'state':<8} {'heartbeat':>10} {'outbox':>6}  "
                 f"model / watchlist / thresholds  drift (worst input, PSI)"]
        now = time.time()
        for g in rows:
            hb = "-" if g["last_heartbeat_at"] is None else f"{now - g['last_heartbeat_at']:.0f} s ago"
            lines.append(f"{g['gateway_id']:<16} {g['region'] + '/' + g['branch']:<20} {g['presence']:<8} {hb:>10} "
                         f"{'-' if g['outbox_depth'] is None else g['outbox_depth']:>6}  "
                         f"{g['model_version'] or '-'} / {g['watchlist_version'] or '-'} / {g['thresholds_version'] or '-'}"
                         f"  {_drift_cell(g['drift'])}")
        return "\n".join(lines)
    return _report(args, build, render)


def _grouped(args, compute, table, row_type, derived: tuple) -> int:
    """A report of rows grouped ``--by`` over ``--since``/``--until``: ``compute(store, by, since,
    until)`` gives the rows, ``table`` prints rows of ``row_type`` rebuilt without their ``derived`` fields."""
    def build(store):
        try:
            return [r.as_dict() for r in compute(store, by=args.by, since=args.since, until=args.until)]
        except ValueError as exc:
            raise CommandError(str(exc)) from None

    def render(rows):
        return table([row_type(**{k: v for k, v in r.items() if k not in derived}) for r in rows])
    return _report(args, build, render)


def _accuracy(args) -> int:
    from counterguard.centre import accuracy

    return _grouped(args, accuracy.precision, accuracy.table, accuracy.Precision, ("precision",))


def _levels(args) -> int:
    from counterguard.centre import levels

    return _grouped(args, levels.levels, levels.table, levels.LevelRow, ("red_precision", "red_interval_95"))


def _quarantine(args) -> int:
    def build(store):
        return {"count": store.quarantine_count(), "latest": store.quarantined(args.limit)}

    def render(data):
        lines = [f"{data['count']} message(s) quarantined; latest first:"]
        for q in data["latest"]:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(q["received_at"]))
            size = f" ({q['size']} bytes, sha256 {q['sha256'][:16]}...)" if q.get("size") is not None else ""
            lines.append(f"{when}Z {q['topic']}{size}: {q['reason']}")
        return "\n".join(lines)
    return _report(args, build, render)


def _label(args) -> int:
    from counterguard.centre import labels
    from counterguard.core import manifest as signed

    cfg = _config(args)
    key_file = args.watchlist_key or cfg.signing.watchlist_key
    try:
        key = signed.load_watchlist_key(key_file) if key_file else None
    except signed.ManifestError as exc:
        raise CommandError(str(exc)) from None
    with _open_store(cfg, create=False) as store:
        try:
            report = labels.import_file(store, args.file, key=key, now=time.time())
        except labels.LabelFileError as exc:
            raise CommandError(f"{args.file}: {exc}") from None
    print(labels.to_json(report) if args.json else report.text(args.file))
    if report.problems:
        print(f"counterguard centre: {len(report.problems)} line(s) of {args.file} refused (the rest stored); "
              "fix them and import the file again (lines already stored are not stored twice)", file=sys.stderr)
        return 1
    return 0


def _train(args) -> int:
    from counterguard.centre import learning

    cfg = _config(args)
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        raise CommandError("training needs TensorFlow: pip install 'counterguard[train]' (tensorflow-cpu)") from None
    with _open_store(cfg, create=False) as store:
        # Progress, and TensorFlow's own chatter, go to stderr: stdout carries the result alone.
        with contextlib.redirect_stdout(sys.stderr):
            try:
                card = learning.train_from_store(
                    store, Path(args.out), honest_after_days=cfg.learning.honest_after_days, since_days=args.since,
                    budget=args.budget, sim_events=args.sim_events, sim_weight=args.sim_weight, seed=args.seed,
                    epochs=args.epochs, version=args.model_version,
                    log=lambda m: print(f"counterguard centre train: {m}", file=sys.stderr, flush=True))
            except learning.LearningError as exc:
                raise CommandError(str(exc)) from None
    print(json.dumps(card, indent=1) if args.json else learning.summary(card))
    return 0


def _keys(args) -> int:
    from counterguard.core import manifest as signed

    out = Path(args.dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"signing": out / "centre-signing.pem", "public": out / "centre-public.pem",
             "watchlist": out / "watchlist.key"}
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing:
        raise CommandError(f"will not overwrite {', '.join(existing)}: a new key would orphan every gateway")
    key = signed.generate_signing_key()
    signed.save_private_key(key, paths["signing"])
    signed.save_public_key(key, paths["public"])
    signed.save_watchlist_key(signed.generate_watchlist_key(), paths["watchlist"])
    print(json.dumps({"key_id": signed.key_id(key), **{k: str(v) for k, v in paths.items()}}))
    return 0


def _dashboard_user(args) -> int:
    from counterguard.core.weblogin import PasswordError, hash_password, read_new_password

    problem = analyst_name_problem(args.name)
    if problem:
        raise CommandError(f"the analyst's name {problem}, got {args.name!r}")
    try:
        hashed = hash_password(read_new_password(f"dashboard password for {args.name}: "))
    except PasswordError as exc:
        raise CommandError(str(exc)) from None
    print(f'{toml_key(args.name)} = "{hashed}"', flush=True)
    return 0


# -- argparse -------------------------------------------------------------------------------------
def _guard(func):
    def run(args) -> int:
        try:
            return func(args)
        except (CommandError, CentreConfigError) as exc:
            print(f"counterguard centre: {exc}", file=sys.stderr)
            return 2
        except Exception as exc:
            from counterguard.centre.store import StoreError

            if isinstance(exc, StoreError):
                print(f"counterguard centre: {exc}", file=sys.stderr)
                return 2
            raise
    return run


def _create_flag(p) -> None:
    p.add_argument("--create", action="store_true",
                   help="make the store if it is not there yet (a first push before 'centre run' ever ran)")


def _common(p) -> None:
    p.add_argument("-c", "--config", help="centre TOML file (docs/centre.md); flags override it")
    p.add_argument("--host", help="broker host (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="broker port (default 1883)")
    p.add_argument("--store", help="SQLite file or postgresql:// URL (default centre.db)")


def _signing(p, *, watchlist: bool = False, target: bool = True) -> None:
    p.add_argument("--signing-key", help="the centre's Ed25519 private key (PEM)")
    if watchlist:
        p.add_argument("--watchlist-key", help="the watchlist hashing key file (hex)")
    if target:
        p.add_argument("--target", required=True, help='"all", "region/<region>" or "gateway/<gateway id>"')


def add_commands(sub) -> None:
    centre = sub.add_parser("centre", help="the anti-fraud centre: intake, dashboard, pushes, accuracy",
                            description="Run the anti-fraud centre and push signed manifests to gateways "
                                        "(docs/centre.md).")
    cmds = centre.add_subparsers(dest="centre_command", metavar="COMMAND", required=True)

    p = cmds.add_parser("run", help="run intake workers and the live dashboard",
                        description="Subscribe (shared) to every gateway's stream, store, receipt, and serve "
                                    "the dashboard, until SIGTERM or Ctrl-C.")
    _common(p)
    p.add_argument("--workers", type=int, help="intake workers in this process (default 1)")
    p.add_argument("--web-port", type=int, help="dashboard port (default 8080; 0 picks a free one)")
    p.add_argument("--no-dashboard", action="store_true", help="intake only (extra workers on other hosts)")
    p.add_argument("--report-every", type=float, default=0, help="print intake counts every N seconds")
    p.set_defaults(func=_guard(_run))

    p = cmds.add_parser("serve", help="run the centre on the backend its config names (one broker or a cluster)",
                        description="Like 'run', with the broker chosen by [broker] engine in --config: "
                                    "\"mqtt\" (one mosquitto, the default) or \"jetstream\" (a NATS cluster, "
                                    "docs/cluster.md). Until SIGTERM or Ctrl-C.")
    _common(p)
    p.add_argument("--workers", type=int, help="intake workers in this process (default 1)")
    p.add_argument("--web-port", type=int, help="dashboard port (default 8080; 0 picks a free one)")
    p.add_argument("--no-dashboard", action="store_true", help="intake only (extra workers on other hosts)")
    p.add_argument("--report-every", type=float, default=0, help="print intake counts every N seconds")
    p.set_defaults(func=_guard(_serve))

    from counterguard.centre import cluster
    cluster.add_parser(cmds)

    p = cmds.add_parser("push-watchlist", help="add/remove stop-payment accounts and push the list",
                        description="Accounts are hashed with the watchlist key; the target's whole list is "
                                    "pushed as the next version, signed and retained.")
    _common(p)
    _signing(p, watchlist=True)
    p.add_argument("--add", action="append", metavar="ACCOUNT", help="account to stop (repeatable)")
    p.add_argument("--remove", action="append", metavar="ACCOUNT", help="account to release (repeatable)")
    p.add_argument("--add-hash", action="append", metavar="HASH", help="an already keyed hash to add")
    p.add_argument("--remove-hash", action="append", metavar="HASH", help="an already keyed hash to remove")
    p.add_argument("--file", help="replace the target's list with the accounts in FILE (one per line, # comments)")
    _create_flag(p)
    p.set_defaults(func=_guard(_push_watchlist))

    p = cmds.add_parser("push-list", help="add/remove warned or restricted persons and push the change",
                        description="Identity numbers and phones are verified and hashed with the alliance key "
                                    "(the watchlist key) here; only the hashes are kept and sent. The change goes "
                                    "to every gateway as signed deltas; a file with bad lines is refused whole, "
                                    "each bad line named.")
    _common(p)
    _signing(p, watchlist=True, target=False)
    p.add_argument("kind", choices=sorted(_LIST_NAMES), help="warned: the police's early-warning list (at least "
                   "amber); restricted: 'both cards restricted' (red)")
    p.add_argument("--add", action="append", metavar="VALUE",
                   help="an identity number, a mobile number or a keyed hash to add (repeatable)")
    p.add_argument("--remove", action="append", metavar="VALUE", help="a value to take off the list (repeatable)")
    p.add_argument("--file", help="entries to add, one per line: VALUE[,TYPE[,LABEL[,FROM[,UNTIL]]]] (# comments; "
                   "empty fields take the flags below)")
    p.add_argument("--replace", action="store_true", help="the --file is the whole list: push it as a full list")
    p.add_argument("--confirmed-sales", action="store_true",
                   help="restricted list: add every person an outlet's supervisor confirmed was selling or renting "
                        "cards (outcome card_sale_confirmed), with their sector as the source; each is named")
    p.add_argument("--id-type", choices=("resident", "passport", "other", "phone", "hash"),
                   help="what --add/--remove values are (default: an 18-character number is a resident identity "
                        "number, 11 digits a mobile, 64 hex digits a hash)")
    p.add_argument("--category", help="warned list: the scam the person was warned of (investment, "
                   "impersonating_police, safe_account, loan, customer_service, romance, part_time_job, other)")
    p.add_argument("--from", dest="source", help="restricted list: who restricted the person (police, bank, "
                   "carrier, centre)")
    p.add_argument("--days", type=int, help="days an entry stands from today (default 90 warned, 365 restricted)")
    p.add_argument("--until", metavar="YYYY-MM-DD", help="last day an entry stands (instead of --days)")
    _create_flag(p)
    p.set_defaults(func=_guard(_push_list))

    p = cmds.add_parser("lists", help="the warned and restricted persons: versions, where entries came from, "
                        "gateways behind", description="For each list of persons: the version pushed, entries in "
                        "force by category (warned) or source (restricted: police, bank, carrier, centre), entries "
                        "past their last day, and the gateways at that version, behind it or reporting a gap.")
    _common(p)
    p.add_argument("--json", action="store_true", help="one JSON document instead of text")
    p.set_defaults(func=_guard(_lists))

    p = cmds.add_parser("push-model", help="push a TFLite model and its card",
                        description="Push MODEL.tflite with its JSON card (MODEL.json beside it by default).")
    _common(p)
    _signing(p)
    p.add_argument("model", metavar="MODEL.tflite", help="the TFLite model file to push")
    p.add_argument("--card", help="the model's JSON card (default: MODEL.json)")
    p.add_argument("--model-version", help="the version gateways will report; must be the card's \"version\" (a check)")
    p.add_argument("--shadow", action="store_true",
                   help="install it as a challenger: gateways score every event with it too and upload both scores, "
                        "but only the model in force decides what the teller sees ('centre compare' judges the two)")
    _create_flag(p)
    p.set_defaults(func=_guard(_push_model))

    p = cmds.add_parser("retire-shadow", help="stop the challenger scoring in shadow at the target's gateways",
                        description="Push a signed shadow manifest that retires the challenger; the model in force "
                                    "is not touched.")
    _common(p)
    _signing(p)
    p.set_defaults(func=_guard(_retire_shadow))

    p = cmds.add_parser("promote", help="make the shadow challenger the model in force: a canary group, then all",
                        description="Push the challenger running in shadow as the model in force to a deterministic "
                                    "--canary PERCENT of the gateways (watched: the group goes back by itself when "
                                    "its alert rate or red precision leaves [canary]'s band), or to --all.")
    _common(p)
    p.add_argument("--signing-key", help="the centre's Ed25519 private key (PEM)")
    p.add_argument("--canary", type=float, metavar="PERCENT", help="share of the gateways to start with")
    p.add_argument("--all", action="store_true", help="every gateway (ends a running canary as promoted)")
    p.add_argument("--challenger", help="the challenger's model version (default: the latest in shadow)")
    p.add_argument("--without-judgement", metavar="REASON",
                   help="promote although the shadow was not judged (under a week, under 30 fraud labels, or worse "
                        "at the 1 %% budget); the reason is logged")
    p.set_defaults(func=_guard(_promote))

    p = cmds.add_parser("rollback", help="put the previous model back on the running canary's gateways, at once",
                        description="Push the model in force before the canary to its gateways as a rollback, "
                                    "which they apply at once even with red alerts open.")
    _common(p)
    p.add_argument("--signing-key", help="the centre's Ed25519 private key (PEM)")
    p.add_argument("--reason", default="no reason given", help="why, for the record and the dashboard")
    p.set_defaults(func=_guard(_rollback))

    p = cmds.add_parser("canaries", help="every canary: its challenger, gateways, state and why it ended")
    _common(p)
    p.add_argument("--json", action="store_true", help="one JSON document instead of a table")
    p.set_defaults(func=_guard(_canaries))

    p = cmds.add_parser("compare", help="the model in force against its shadow challenger on the same labelled events",
                        description="On the uploaded events both models scored, labelled by outcomes, staff reports "
                                    "and imported cases: recall of each at 0.5, 1 and 2 %% of honest customers "
                                    "alerted, per typology where the cases name one, each with the labels behind it "
                                    "and a 95 %% interval.")
    _common(p)
    p.add_argument("--since", type=float, metavar="DAYS", help="only events of the last DAYS days")
    p.add_argument("--challenger", help="the challenger's model version (default: the one most events carry)")
    p.add_argument("--json", action="store_true", help="one JSON document instead of a table")
    p.set_defaults(func=_guard(_compare))

    p = cmds.add_parser("push-thresholds", help="push amber and red thresholds",
                        description="Push new verdict thresholds (0 < amber < red <= 1).")
    _common(p)
    _signing(p)
    p.add_argument("--amber", type=float, required=True, help="score at or above which a verdict is amber")
    p.add_argument("--red", type=float, required=True, help="score at or above which a verdict is red")
    _create_flag(p)
    p.set_defaults(func=_guard(_push_thresholds))

    p = cmds.add_parser("rollout", help="which gateways applied which pushed version")
    _common(p)
    p.add_argument("--json", action="store_true", help="one JSON document instead of a table")
    p.set_defaults(func=_guard(_rollout))

    p = cmds.add_parser("fleet", help="every gateway's state, heartbeat, outbox and versions")
    _common(p)
    p.add_argument("--heartbeat-s", type=float, default=30.0, help="gateways' heartbeat period (default 30)")
    p.add_argument("--json", action="store_true", help="one JSON document instead of a table")
    p.set_defaults(func=_guard(_fleet))

    p = cmds.add_parser("accuracy", help="precision of red and amber warnings from recorded outcomes")
    _common(p)
    p.add_argument("--by", default="branch", help="branch, region, day, week, month or all (default branch)")
    p.add_argument("--since", help="alerts raised at or after this UTC date/time (RFC 3339)")
    p.add_argument("--until", help="alerts raised before this UTC date/time")
    p.add_argument("--json", action="store_true", help="one JSON document instead of a table")
    p.set_defaults(func=_guard(_accuracy))

    p = cmds.add_parser("levels", help="the three levels of dissuasion per branch: alerts, outcomes, red precision",
                        description="Per group and per level that handled the alert (1 teller's caring questions, "
                                    "2 supervisor's talk, 3 police called): alerts, customers dissuaded, confirmed "
                                    "frauds, police called, false alarms, and the precision of red warnings with its "
                                    "95 %% Wilson interval and the number of labels behind it. Outcomes from "
                                    "gateways that do not record the level are counted as 'not recorded'.")
    _common(p)
    p.add_argument("--by", default="branch", help="branch, region, day, week, month or all (default branch)")
    p.add_argument("--since", help="alerts raised at or after this UTC date/time (RFC 3339)")
    p.add_argument("--until", help="alerts raised before this UTC date/time")
    p.add_argument("--json", action="store_true", help="one JSON document instead of a table")
    p.set_defaults(func=_guard(_levels))

    p = cmds.add_parser("label", help="import confirmed cases (police, investigations) as labels for learning",
                        description="Read a case file (JSON Lines, or CSV with a header when it ends in .csv): each "
                                    "line names an event (event_id, optionally gateway_id) or an account (account "
                                    "or account_hash) with from and to, and says label fraud or not_fraud, with "
                                    "source and case_number. Accounts are kept only as keyed hashes. Reports what "
                                    "each line links to, what links to nothing yet, and every refused line by "
                                    "number; exit status 1 when any line was refused.")
    _common(p)
    p.add_argument("file", metavar="FILE", help="the case file (.jsonl or .csv)")
    p.add_argument("--watchlist-key", help="the watchlist hashing key file (hex), to hash accounts given in clear "
                                           "(default: [signing] watchlist_key in --config)")
    p.add_argument("--json", action="store_true", help="one JSON document instead of text")
    p.set_defaults(func=_guard(_label))

    p = cmds.add_parser("train", help="train a challenger model on the fleet's own labelled events",
                        description="Join every label (outcomes, staff reports, imported cases) to the events the "
                                    "gateways uploaded, train on the first 80 %% of their time span, set thresholds "
                                    "for the alert budget on the fleet's own honest customers, and judge it on the "
                                    "latest 20 %% next to the model in force. Writes counterguard-fleet.tflite and "
                                    "its card (counterguard-fleet.json) into --out.")
    _common(p)
    p.add_argument("--out", default="fleet-model", help="folder for the model and its card (default fleet-model)")
    p.add_argument("--since", type=float, metavar="DAYS", help="only events of the last DAYS days (default: all kept)")
    p.add_argument("--budget", type=float, default=0.01,
                   help="share of honest customers alerted amber or red (default 0.01; red gets a fifth)")
    p.add_argument("--sim-events", type=int, default=SIM_EVENTS,
                   help=f"simulated events to train on as well, weighted by --sim-weight: they keep the typologies "
                        f"the fleet has seen few of (default {SIM_EVENTS}; 0 for the fleet's events alone)")
    p.add_argument("--sim-weight", type=float, default=0.3, help="what a simulated event weighs against a fleet "
                                                                  "event (default 0.3)")
    p.add_argument("--seed", type=int, default=7, help="seed for the simulator and the training (default 7)")
    p.add_argument("--epochs", type=int, help="training epochs (default 20)")
    p.add_argument("--model-version", help="the version to give the model (default fleet-YYYYMMDD-HHMM, UTC)")
    p.add_argument("--json", action="store_true", help="print the whole card as JSON instead of a summary")
    p.set_defaults(func=_guard(_train))

    p = cmds.add_parser("drift", help="how far each gateway's latest inputs and alert rate are from the reference",
                        description="Population stability index of every model input per gateway, and its alert "
                                    "rate, for the last --window-days against the model card's training data "
                                    "(--card) or the fleet's --reference-days before; PSI above 0.25 and an alert "
                                    "rate beyond twice or under half the reference's are flagged.")
    _common(p)
    p.add_argument("--window-days", type=float, default=1.0, help="the recent window judged (default 1 day)")
    p.add_argument("--reference-days", type=float, default=28.0,
                   help="without --card: the fleet's days before the window used as reference (default 28)")
    p.add_argument("--card", help="a model card with a training reference (from 'centre train')")
    p.add_argument("--json", action="store_true", help="one JSON document instead of a table")
    p.set_defaults(func=_guard(_drift))

    p = cmds.add_parser("quarantine", help="malformed messages and why they were refused")
    _common(p)
    p.add_argument("--limit", type=int, default=20, help="how many of the latest to show (default 20)")
    p.add_argument("--json", action="store_true", help="one JSON document instead of a table")
    p.set_defaults(func=_guard(_quarantine))

    p = cmds.add_parser("keys", help="create the centre signing key pair and a watchlist key in DIR",
                        description="Write centre-signing.pem (keep it at the centre), centre-public.pem (for every "
                                    "gateway) and watchlist.key (centre and gateways); refuses to overwrite.")
    p.add_argument("dir", help="directory for the key files (created; existing keys are never replaced)")
    p.set_defaults(func=_guard(_keys))

    p = cmds.add_parser("dashboard-user", help="hash an analyst's dashboard password for [dashboard.users]",
                        description="Read the analyst's password (asked twice on a terminal, or one line on stdin) "
                                    "and print the line to paste under [dashboard.users] in the centre config.")
    p.add_argument("name", metavar="NAME", help="the analyst's name, as they will type it to log in")
    p.set_defaults(func=_guard(_dashboard_user))
