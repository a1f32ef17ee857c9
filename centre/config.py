"""The centre's settings: one small TOML file, every key optional (command-line flags override it).

    [broker]                    # the MQTT broker (or cluster listener) the gateways use
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
    host = "127.0.0.1"
    port = 8080
    heartbeat_s = 30            # the gateways' heartbeat period: 3 missed ones show as "silent"

    [signing]
    key = "/etc/counterguard/centre-signing.pem"   # Ed25519 private key (push commands only)
    watchlist_key = "/etc/counterguard/watchlist.key"
    key_version = 1

A bad file raises ``CentreConfigError`` naming the file and the key.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path


class CentreConfigError(ValueError):
    """The centre's config file is wrong; the message names the file and the key."""


@dataclass
class Broker:
    host: str = "127.0.0.1"
    port: int = 1883
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


@dataclass
class Signing:
    key: str = ""
    watchlist_key: str = ""
    key_version: int = 1


@dataclass
class CentreConfig:
    broker: Broker = field(default_factory=Broker)
    store: Store = field(default_factory=Store)
    ingest: Ingest = field(default_factory=Ingest)
    dashboard: Dashboard = field(default_factory=Dashboard)
    signing: Signing = field(default_factory=Signing)


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
            raise CentreConfigError(f"{path}: {name}.{key} must be a {want.__name__}, got {value!r}")
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
    return CentreConfig(**out)
