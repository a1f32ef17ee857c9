"""The centre's settings: one small TOML file, every key optional (command-line flags override it).

    [broker]                    # the MQTT broker (or cluster listener) the gateways use
    engine = "mqtt"             # or "jetstream": a NATS cluster (docs/cluster.md), with servers = [...]
    host = "mqtt.centre.example"
    port = 8883
    username = "centre"
    password_file = "/etc/counterguard/centre.password"
    ca = "/etc/counterguard/ca.pem"           # TLS when set; cert/key for client certificates
    cert = "/etc/counterguard/centre.pem"
    key = "/etc/counterguard/centre.key"

    [store]
    url = "/var/lib/counterguard/centre.db"   # or "postgresql://centre@db.centre.example/centre"

    [ingest]
    workers = 2                 # intake workers in this process (more processes or hosts scale further)
    share = "centre"            # shared-subscription group; every centre worker uses the same one
    client_id = "centre-a"      # unique per process (default: centre-<host>-<pid>)

    [dashboard]
    host = "127.0.0.1"          # any other address needs [dashboard.users]
    port = 8080
    heartbeat_s = 30            # the gateways' heartbeat period: 3 missed ones show as "silent"

    [dashboard.users]           # analyst name = scrypt hash from 'counterguard centre dashboard-user NAME'
    "Li Wei" = "scrypt$16384$8$1$..."

    [signing]
    key = "/etc/counterguard/centre-signing.pem"   # Ed25519 private key (push commands only)
    watchlist_key = "/etc/counterguard/watchlist.key"
    key_version = 1

    [learning]                  # the events every gateway uploads (docs/centre.md, "Events for learning")
    keep_days = 180             # dropped, a day at a time, once their day is older than this
    honest_after_days = 30      # an event nobody labelled in this many days counts as honest in training

    [canary]                    # when a promoted challenger goes back by itself (docs/centre.md, "Canary")
    alert_rate_max = 0.05       # share of a canary gateway's verdicts that are amber or red
    red_precision_min = 0.2     # share of its judged reds that were fraud
    min_events = 20
    check_every_s = 10

A bad file raises ``CentreConfigError`` naming the file and the key.
"""

from __future__ import annotations

import tomllib
import unicodedata
from dataclasses import dataclass, field, fields
from pathlib import Path

from counterguard.core.weblogin import NotAHash, PasswordError, check_hash_format

ANALYST_NAME_MAX = 64   # as long as the login form takes


class CentreConfigError(ValueError):
    """The centre's config file is wrong; the message names the file and the key."""


ENGINES = ("mqtt", "jetstream")


@dataclass
class Broker:
    engine: str = "mqtt"        # mqtt: one broker, shared subscriptions; jetstream: a NATS cluster's stream
    host: str = "127.0.0.1"
    port: int = 1883
    servers: list = field(default_factory=list)   # jetstream: every node's NATS URL (tls://host:port)
    username: str = ""
    password_file: str = ""
    ca: str = ""
    cert: str = ""
    key: str = ""

    def password(self) -> str | None:
        if not self.password_file:
            return None
        try:
            return Path(self.password_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise CentreConfigError(f"broker.password_file {self.password_file}: {exc.strerror or exc}") from None

    def tls(self) -> dict | None:
        if not self.ca:
            return None
        return {"ca_certs": self.ca, "certfile": self.cert or None, "keyfile": self.key or None}


@dataclass
class Store:
    url: str = "centre.db"


@dataclass
class Ingest:
    workers: int = 1
    share: str = "centre"
    client_id: str = ""


@dataclass
class Dashboard:
    host: str = "127.0.0.1"
    port: int = 8080
    heartbeat_s: float = 30.0
    users: dict = field(default_factory=dict)   # analyst name -> scrypt hash; empty: no login (loopback only)


@dataclass
class Signing:
    key: str = ""
    watchlist_key: str = ""
    key_version: int = 1


@dataclass
class Learning:
    keep_days: int = 180          # uploaded events older than this (by event day) are dropped
    honest_after_days: int = 30   # an event with no label this long after it counts as honest in training


@dataclass
class Canary:
    alert_rate_max: float = 0.05      # a canary gateway alerting more than this share is rolled back
    alert_rate_min: float = 0.0       # ... or less than this (0: no lower bound)
    red_precision_min: float = 0.2    # ... or whose judged reds are fraud less often than this
    min_events: int = 20
    min_judged_reds: int = 10
    check_every_s: float = 10.0


@dataclass
class CentreConfig:
    broker: Broker = field(default_factory=Broker)
    store: Store = field(default_factory=Store)
    ingest: Ingest = field(default_factory=Ingest)
    dashboard: Dashboard = field(default_factory=Dashboard)
    signing: Signing = field(default_factory=Signing)
    learning: Learning = field(default_factory=Learning)
    canary: Canary = field(default_factory=Canary)


def _section(path, name: str, cls, table) -> object:
    if not isinstance(table, dict):
        raise CentreConfigError(f"{path}: [{name}] must be a table")
    known = {f.name: f for f in fields(cls)}
    values = {}
    for key, value in table.items():
        if key not in known:
            raise CentreConfigError(f"{path}: unknown key {name}.{key} (known: {', '.join(known)})")
        want = type(getattr(cls(), key))
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, want) or isinstance(value, bool) != (want is bool):
            kind = "table" if want is dict else want.__name__
            raise CentreConfigError(f"{path}: {name}.{key} must be a {kind}, got {value!r}")
        if want in (int, float) and value <= 0:
            raise CentreConfigError(f"{path}: {name}.{key} must be positive, got {value!r}")
        values[key] = value
    return cls(**values)


def load_config(path) -> CentreConfig:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CentreConfigError(f"{path}: no such centre config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CentreConfigError(f"{path}: cannot read it: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise CentreConfigError(f"{path}: not valid TOML: {exc}") from None
    sections = {f.name: f.default_factory for f in fields(CentreConfig)}
    out = {}
    for name, table in data.items():
        if name not in sections:
            raise CentreConfigError(f"{path}: unknown section [{name}] (known: {', '.join(sections)})")
        out[name] = _section(path, name, sections[name], table)
    cfg = CentreConfig(**out)
    _check_engine(path, cfg.broker)
    for name, stored in cfg.dashboard.users.items():
        _check_user(path, name, stored)
    return cfg


def _check_engine(path, broker: Broker) -> None:
    if broker.engine not in ENGINES:
        raise CentreConfigError(f"{path}: broker.engine must be one of {', '.join(ENGINES)}, got {broker.engine!r}")
    if any(not isinstance(s, str) or "://" not in s for s in broker.servers):
        raise CentreConfigError(f"{path}: broker.servers must be NATS URLs like \"tls://mq1.centre.example:4222\", "
                                f"got {broker.servers!r}")
    if broker.engine == "jetstream" and not broker.servers:
        raise CentreConfigError(f"{path}: broker.engine = \"jetstream\" needs broker.servers, the cluster's NATS "
                                "URLs ('counterguard centre cluster up' writes a centre.toml with them)")


def analyst_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be an analyst's login name, or None if it can."""
    if not name or name != name.strip():
        return "must not be empty or start or end with a space"
    if len(name) > ANALYST_NAME_MAX:
        return f"must be at most {ANALYST_NAME_MAX} characters"
    if any(unicodedata.category(c).startswith("C") for c in name):
        return "must not contain control characters"
    return None


def _check_user(path, name: str, stored) -> None:
    key = f"dashboard.users.{toml_key(name)}"
    problem = analyst_name_problem(name)
    if problem:
        raise CentreConfigError(f"{path}: {key}: the analyst's name {problem}")
    if not isinstance(stored, str):
        raise CentreConfigError(f"{path}: {key} must be a password hash (text), got {stored!r}")
    try:
        check_hash_format(stored)
    except PasswordError as exc:
        # Not the form at all: the shared checker's wording names the branch console's command, so say
        # it here with the centre's; bad parameters are told as the checker tells them.
        why = "expected scrypt$N$r$p$salt$hash" if isinstance(exc, NotAHash) else str(exc)
        raise CentreConfigError(f"{path}: {key} is not a password hash as printed by "
                                f"'counterguard centre dashboard-user NAME' ({why})") from None


def toml_key(name: str) -> str:
    """``name`` as a TOML key: bare when it can be, else a quoted string."""
    if name and all(c.isascii() and (c.isalnum() or c in "-_") for c in name):
        return name
    return '"' + "".join(c if c.isprintable() and c not in '"\\' else f"\\U{ord(c):08x}" for c in name) + '"'

