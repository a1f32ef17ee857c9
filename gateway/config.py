"""Gateway configuration: one TOML file, validated on load, every error naming the file and the key.

Every setting has a default so a gateway runs on this machine's embedded defaults (the demo); a
branch install overrides what differs (ids, serial ports, broker, pin map). docs/configuration.md
is the reference and is checked against ``SECTIONS`` by the tests.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from counterguard.core.weblogin import is_loopback

_TOPIC_SAFE = re.compile(r"[A-Za-z0-9._-]{1,64}")
_STAFF_NUMBER = re.compile(r"[A-Za-z0-9._-]{1,64}")


class ConfigError(ValueError):
    """A configuration file is unreadable or a key in it is wrong."""

    def __init__(self, path: str | Path | None, key: str | None, message: str):
        where = str(path) if path else "<defaults>"
        text = f"{where}: {key}: {message}" if key else f"{where}: {message}"
        super().__init__(text)
        self.path = str(path) if path else None
        self.key = key


class ConfigErrors(ConfigError):
    """Every problem found in one file (``load_config(..., collect=True)``), one ``FILE: key: problem``
    line each, so an installer fixes them all in one pass; ``config`` is the file read with defaults
    in place of the wrong values, for checks that look further (``check_ready``)."""

    def __init__(self, errors: list[ConfigError], config: "Config | None" = None):
        ValueError.__init__(self, "\n".join(str(e) for e in errors))
        self.errors = list(errors)
        self.path = errors[0].path if errors else None
        self.key = errors[0].key if errors else None
        self.config = config


class _Problems:
    """Where validation reports a problem: raised at once (the gateway fails fast) or gathered."""

    def __init__(self, collect: bool):
        self.collect = collect
        self.errors: list[ConfigError] = []

    def add(self, error: ConfigError) -> None:
        if not self.collect:
            raise error
        self.errors.append(error)


def _setting(default, doc: str, *, lo=None, hi=None, choices=None):
    return field(default=default, metadata={"doc": doc, "lo": lo, "hi": hi, "choices": choices})


@dataclass(frozen=True)
class GatewaySettings:
    id: str = _setting("gw-demo-0001", "Gateway id: MQTT client id and certificate CN.")
    region: str = _setting("demo-region", "Region code in the MQTT topic tree.")
    branch: str = _setting("demo-branch", "Branch or outlet code in the MQTT topic tree.")
    data_dir: str = _setting("/var/lib/counterguard", "Where the SQLite store lives.")
    sector: str = _setting("bank", "bank: withdrawals, transfers and account openings; carrier: SIM card "
                           "activations at a carrier's outlet.", choices=("bank", "carrier"))


@dataclass(frozen=True)
class SerialSettings:
    path: str = _setting("", "Serial device, e.g. /dev/serial/by-id/usb-...; a list of ports uses [[serial]].")
    baudrate: int = _setting(115200, "Baud rate of the counter link.", lo=1200, hi=4_000_000)
    name: str = _setting("", "Label for logs and the heartbeat (default: the path).")


@dataclass(frozen=True)
class LinkSettings:
    heartbeat_s: float = _setting(2.0, "Seconds between link heartbeats when the line is idle.", lo=0.2, hi=60)
    silent_after_s: float = _setting(6.0, "A counter link with no bytes for this long is reported silent.", lo=0.5, hi=600)


@dataclass(frozen=True)
class ModelSettings:
    path: str = _setting("", "A .tflite model with its .json manifest beside it (default: the bundled model).")


@dataclass(frozen=True)
class ThresholdSettings:
    amber: float = _setting(0.0, "Score at or above which a verdict is amber (0: the model manifest's value).", lo=0.0, hi=1.0)
    red: float = _setting(0.0, "Score at or above which a verdict is red (0: the model manifest's value).", lo=0.0, hi=1.0)
    dialogue: bool = _setting(False, "The tellers ask the caring questions at every amber and the terminals or the console send the answers: use the model's dialogue thresholds, which ask more customers and let the answers clear most of them (ignored when amber and red are set).")


@dataclass(frozen=True)
class WatchlistSettings:
    file: str = _setting("", "Stop-payment list to seed a new gateway (one account per line, # comments); ignored once the centre has pushed a list.")


@dataclass(frozen=True)
class LampSettings:
    pinmap: str = _setting("", "Pin map file (default: hardware/pinmaps/pi4-4counter.toml).")
    pins: str = _setting("auto", "auto: real pins on a Raspberry Pi, mock pins elsewhere.", choices=("auto", "mock", "real"))
    show: bool = _setting(True, "Print lamp changes in the terminal when pins are mocked.")


@dataclass(frozen=True)
class MqttSettings:
    host: str = _setting("127.0.0.1", "Broker host, or a clustered centre's nodes as a comma-separated list of host[:port] (port defaults to mqtt.port), tried in turn on reconnect.")
    port: int = _setting(1883, "Broker port.", lo=1, hi=65535)
    keepalive: int = _setting(30, "MQTT keepalive in seconds.", lo=5, hi=3600)
    heartbeat_s: float = _setting(30.0, "Seconds between heartbeats to the centre.", lo=1, hi=3600)
    republish_after_s: float = _setting(30.0, "Resend an alert not receipted by the centre after this long.", lo=1, hi=86400)
    backoff_min_s: float = _setting(1.0, "Shortest reconnect delay.", lo=0.1, hi=60)
    backoff_max_s: float = _setting(120.0, "Longest reconnect delay.", lo=1, hi=3600)
    ca_file: str = _setting("", "CA certificate for TLS (empty: plain MQTT on a trusted LAN or loopback).")
    cert_file: str = _setting("", "This gateway's client certificate for TLS.")
    key_file: str = _setting("", "This gateway's private key for TLS.")


@dataclass(frozen=True)
class StoreSettings:
    path: str = _setting("", "SQLite file (default: DATA_DIR/counterguard.db).")
    synchronous: str = _setting("FULL", "SQLite synchronous mode; FULL survives a power cut.", choices=("FULL", "NORMAL"))
    keep_days: int = _setting(90, "Days to keep green events; unreceipted alerts are always kept.", lo=1, hi=3650)


@dataclass(frozen=True)
class UploadSettings:
    events: bool = _setting(True, "Send the centre every scored event for learning (features, verdict, model version; account numbers only as keyed hashes), behind alerts, through the outbox.")
    batch_events: int = _setting(500, "Events per upload batch (one compressed MQTT message).", lo=10, hi=5000)
    interval_s: float = _setting(60.0, "A batch smaller than batch_events goes once its oldest event has waited this long.", lo=1, hi=86400)
    wait_for_quiet_s: float = _setting(300.0, "While the counters are taking events (a burst), a due batch waits for a quiet moment, at most this long after its oldest event (0: never waits).", lo=0, hi=86400)


@dataclass(frozen=True)
class SupervisorSettings:
    escalate_after_s: float = _setting(120.0, "A red alert unacknowledged this long re-sounds the supervisor buzzer and is escalated to the centre (once per alert).", lo=1, hi=86400)
    questions_file: str = _setting("", "Caring questions per reason, in Chinese and English (default: the bundled gateway/caring_questions.toml).")


@dataclass(frozen=True)
class ConsoleSettings:
    enabled: bool = _setting(False, "Serve the branch console (open alerts, acknowledge, outcomes) on the branch LAN.")
    listen: str = _setting("127.0.0.1", "Address the console listens on (127.0.0.1: this machine only); any other needs cert_file and key_file, or behind_proxy.")
    port: int = _setting(8080, "Console port (0: any free port, for tests).", lo=0, hi=65535)
    password_hash: str = _setting("", "The branch's console password, hashed: make it with 'counterguard console-password'.")
    staff: tuple = _setting((), "The branch's roster: staff numbers that may log in (required when the console is enabled); the supervisor commands' --by must be one of them too.")
    cert_file: str = _setting("", "TLS certificate (PEM, with its chain) for serving the console over HTTPS.")
    key_file: str = _setting("", "The TLS certificate's private key (PEM).")
    behind_proxy: bool = _setting(False, "The branch's TLS proxy serves the console (docs/supervisor.md): plain HTTP on a non-loopback listen address is allowed, and a proxy on this machine forwards the client's address.")
    session_hours: float = _setting(12.0, "A login lasts this long (one shift).", lo=0.1, hi=72)


@dataclass(frozen=True)
class DownlinkSettings:
    centre_public_key: str = _setting("", "The centre's Ed25519 public key (PEM): signed models, thresholds and watchlists are applied only if it verifies them (empty: no signed downlink).")
    watchlist_key: str = _setting("", "Key file (hex) the stop-payment list is hashed with, from the gateway's bundle (empty: a key of this gateway's own).")
    watchlist_key_version: int = _setting(1, "Version of that key; a watchlist hashed with another version is refused.", lo=1, hi=1_000_000)


@dataclass(frozen=True)
class Config:
    gateway: GatewaySettings = field(default_factory=GatewaySettings)
    serial: tuple = ()
    link: LinkSettings = field(default_factory=LinkSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    thresholds: ThresholdSettings = field(default_factory=ThresholdSettings)
    watchlist: WatchlistSettings = field(default_factory=WatchlistSettings)
    lamps: LampSettings = field(default_factory=LampSettings)
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    upload: UploadSettings = field(default_factory=UploadSettings)
    supervisor: SupervisorSettings = field(default_factory=SupervisorSettings)
    console: ConsoleSettings = field(default_factory=ConsoleSettings)
    downlink: DownlinkSettings = field(default_factory=DownlinkSettings)
    source: str | None = None

    def with_changes(self, section: str, **values) -> "Config":
        return replace(self, **{section: replace(getattr(self, section), **values)})

    @property
    def store_path(self) -> Path:
        return Path(self.store.path) if self.store.path else Path(self.gateway.data_dir) / "counterguard.db"


SECTIONS = {
    "gateway": GatewaySettings,
    "serial": SerialSettings,
    "link": LinkSettings,
    "model": ModelSettings,
    "thresholds": ThresholdSettings,
    "watchlist": WatchlistSettings,
    "lamps": LampSettings,
    "mqtt": MqttSettings,
    "store": StoreSettings,
    "upload": UploadSettings,
    "supervisor": SupervisorSettings,
    "console": ConsoleSettings,
    "downlink": DownlinkSettings,
}


def _check_value(path, key: str, f, value: Any):
    kind = f.type if isinstance(f.type, type) else {"str": str, "int": int, "float": float, "bool": bool,
                                                    "tuple": tuple}[f.type]
    if kind is tuple:  # a list of strings in the file
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(path, key, f"must be a list of strings, got {value!r}")
        return tuple(value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is not bool and isinstance(value, bool) or not isinstance(value, kind):
        raise ConfigError(path, key, f"must be {kind.__name__}, got {type(value).__name__} {value!r}")
    if kind is float and not math.isfinite(value):  # TOML has nan and inf; no setting means either
        raise ConfigError(path, key, f"must be a finite number, got {value}")
    meta = f.metadata
    if meta.get("lo") is not None and value < meta["lo"]:
        raise ConfigError(path, key, f"must be at least {meta['lo']}, got {value}")
    if meta.get("hi") is not None and value > meta["hi"]:
        raise ConfigError(path, key, f"must be at most {meta['hi']}, got {value}")
    if meta.get("choices") and value not in meta["choices"]:
        raise ConfigError(path, key, f"must be one of {', '.join(meta['choices'])}, got {value!r}")
    return value


def _section(path, name: str, cls, table: Any, problems: _Problems | None = None):
    """The section's settings; a wrong key is reported to ``problems`` and left at its default."""
    problems = problems or _Problems(collect=False)
    if not isinstance(table, dict):
        problems.add(ConfigError(path, name, "must be a table ([" + name + "])"))
        return None
    known = {f.name: f for f in fields(cls)}
    values = {}
    for key, value in table.items():
        dotted = f"{name}.{key}"
        if key not in known:
            problems.add(ConfigError(path, dotted, f"unknown key; {name} takes {', '.join(known)}"))
            continue
        try:
            values[key] = _check_value(path, dotted, known[key], value)
        except ConfigError as exc:
            problems.add(exc)
    return cls(**values)


_BROKER = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::(?P<port>[0-9]{1,5}))?")


def _check_brokers(path, host: str, problems: _Problems) -> None:
    """``mqtt.host``: one host, or a cluster's nodes as ``host[:port], host[:port], ...``."""
    items = [item.strip() for item in host.split(",")]
    for item in items:
        m = _BROKER.fullmatch(item)
        if not m or (m["port"] and not 1 <= int(m["port"]) <= 65535):
            problems.add(ConfigError(path, "mqtt.host", f"{item!r} is not host or host:port (port 1-65535); "
                                     "list a cluster's nodes as \"n1.centre.example, n2.centre.example:8884\""))
            return


def parse_config(data: dict, path: str | Path | None = None, *, collect: bool = False) -> Config:
    """The checked Config; the first wrong key raises ConfigError, or with ``collect`` every wrong
    key is gathered into one ConfigErrors."""
    problems = _Problems(collect)
    for name in data:
        if name not in SECTIONS:
            problems.add(ConfigError(path, name, f"unknown section; expected {', '.join(SECTIONS)}"))
    sections = {}
    for name, cls in SECTIONS.items():
        if name not in data:
            continue
        if name == "serial":
            raw = data[name]
            ports = raw if isinstance(raw, list) else [raw]
            parsed = []
            for i, table in enumerate(ports):
                port = _section(path, f"serial[{i}]", cls, table, problems)
                if port is None:
                    continue
                if not port.path:
                    problems.add(ConfigError(path, f"serial[{i}].path", "is required"))
                parsed.append(port)
            sections[name] = tuple(parsed)
        else:
            section = _section(path, name, cls, data[name], problems)
            if section is not None:
                sections[name] = section
    cfg = Config(**sections, source=str(path) if path else None)
    for key in ("id", "region", "branch"):
        if not _TOPIC_SAFE.fullmatch(getattr(cfg.gateway, key)):
            problems.add(ConfigError(path, f"gateway.{key}", "must be 1-64 letters, digits, '.', '_' or '-' (it is part of MQTT topics)"))
    t = cfg.thresholds
    if (t.amber or t.red) and not 0 < t.amber < t.red <= 1:
        problems.add(ConfigError(path, "thresholds", f"need 0 < amber < red <= 1 (or both 0 for the model's own), got amber={t.amber} red={t.red}"))
    if cfg.mqtt.backoff_min_s > cfg.mqtt.backoff_max_s:
        problems.add(ConfigError(path, "mqtt.backoff_min_s", "must not exceed mqtt.backoff_max_s"))
    _check_brokers(path, cfg.mqtt.host, problems)
    tls = [cfg.mqtt.ca_file, cfg.mqtt.cert_file, cfg.mqtt.key_file]
    if any(tls) and not all(tls):
        problems.add(ConfigError(path, "mqtt.ca_file", "TLS needs ca_file, cert_file and key_file together"))
    if cfg.console.password_hash:
        from counterguard.core.weblogin import PasswordError, check_hash_format

        try:
            check_hash_format(cfg.console.password_hash)
        except PasswordError as exc:
            problems.add(ConfigError(path, "console.password_hash", str(exc)))
    elif cfg.console.enabled:
        problems.add(ConfigError(path, "console.password_hash", "is required when the console is enabled; "
                                 "make one with 'counterguard console-password'"))
    check_console(cfg.console, path, problems)
    if problems.errors:
        raise ConfigErrors(problems.errors, cfg)
    return cfg



def check_console(c: ConsoleSettings, path=None, problems: _Problems | None = None) -> None:
    """The console's roster and how it is reached; ConfigError naming the key."""
    problems = problems or _Problems(collect=False)
    for i, number in enumerate(c.staff):
        if not _STAFF_NUMBER.fullmatch(number):
            problems.add(ConfigError(path, f"console.staff[{i}]", f"{number!r} is not a staff number "
                                     "(1-64 letters, digits, '.', '_' or '-')"))
    if bool(c.cert_file) != bool(c.key_file):
        problems.add(ConfigError(path, "console.cert_file", "TLS needs cert_file and key_file together"))
    if not c.enabled:
        return
    if not c.staff:
        problems.add(ConfigError(path, "console.staff", "is required when the console is enabled: list the staff "
                                 'numbers that may log in, e.g. staff = ["S1024", "S2048"]'))
    if not is_loopback(c.listen) and not c.cert_file and not c.behind_proxy:
        problems.add(ConfigError(path, "console.listen", f"{c.listen or 'every address'} is reachable from the branch LAN, "
                                 "so the console must not speak plain HTTP there: set console.cert_file and "
                                 "console.key_file (HTTPS), or console.behind_proxy = true behind the branch's TLS proxy "
                                 "(docs/supervisor.md), or listen on 127.0.0.1"))


def load_config(path: str | Path, *, collect: bool = False) -> Config:
    """The gateway's Config from ``path``: the first problem raises ConfigError (the gateway fails
    fast); ``collect`` gathers every wrong key into one ConfigErrors (``check-config``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, None, "no such file; write one from docs/configuration.md") from None
    except OSError as exc:
        raise ConfigError(path, None, f"cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(path, None, "not a UTF-8 text file; a config is TOML text") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, None, f"not valid TOML: {exc}") from None
    return parse_config(data, path, collect=collect)
