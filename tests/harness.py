"""Shared helpers for end-to-end tests: a real pty counter line and a gateway config around it."""

from __future__ import annotations

import os
import tty
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

from counterguard.gateway.config import (
    Config,
    LampSettings,
    UploadSettings,
    LinkSettings,
    MqttSettings,
    SerialSettings,
    StoreSettings,
    WatchlistSettings,
)

CST = timezone(timedelta(hours=8))
MULE = "6217000099887766554"


@contextmanager
def pty_pair():
    """(master_fd, slave_path): the terminal writes to master, the gateway opens slave_path."""
    master, slave = os.openpty()
    tty.setraw(slave)
    try:
        yield master, os.ttyname(slave)
    finally:
        os.close(master)
        os.close(slave)


def gateway_config(tmp_path: Path, *, broker_port: int, serial_path: str | None, watchlist: bool = True,
                   republish_after_s: float = 3.0) -> Config:
    wl = ""
    if watchlist:
        path = tmp_path / "stop-payment.txt"
        path.write_text(f"# test list\n{MULE}\n")
        wl = str(path)
    return Config(
        serial=(SerialSettings(path=serial_path, name="test line"),) if serial_path else (),
        link=LinkSettings(heartbeat_s=1.0),
        lamps=LampSettings(pins="mock", show=False),
        mqtt=MqttSettings(port=broker_port, heartbeat_s=2.0, republish_after_s=republish_after_s,
                          backoff_min_s=0.2, backoff_max_s=1.0),
        store=StoreSettings(path=str(tmp_path / "gateway.db")),
        watchlist=WatchlistSettings(file=wl),
        upload=UploadSettings(batch_events=100, interval_s=1.0),  # events reach the centre within the test
    )


def config_toml(cfg: Config) -> str:
    """The same config as a TOML file, for a gateway run as its own process."""
    lines = ["[gateway]", f'data_dir = "{Path(cfg.store.path).parent}"', "[store]", f'path = "{cfg.store.path}"',
             "[lamps]", 'pins = "mock"', "show = false", "[link]", f"heartbeat_s = {cfg.link.heartbeat_s}",
             "[mqtt]", f"port = {cfg.mqtt.port}", f"heartbeat_s = {cfg.mqtt.heartbeat_s}",
             f"republish_after_s = {cfg.mqtt.republish_after_s}", f"backoff_min_s = {cfg.mqtt.backoff_min_s}",
             f"backoff_max_s = {cfg.mqtt.backoff_max_s}",
             "[upload]", f"events = {str(cfg.upload.events).lower()}", f"batch_events = {cfg.upload.batch_events}",
             f"interval_s = {cfg.upload.interval_s}"]
    if cfg.watchlist.file:
        lines += ["[watchlist]", f'file = "{cfg.watchlist.file}"']
    for port in cfg.serial:
        lines += ["[[serial]]", f'path = "{port.path}"']
    return "\n".join(lines) + "\n"


_n = 0


def event(counter: int = 1, amount: float = 1500, account: str = "6222020200000000101", **extra) -> dict:
    """A schema-v1 event with a fresh id (unless given) and the time now."""
    global _n
    _n += 1
    body = {"event_id": extra.pop("event_id", f"t{os.getpid()}-{_n}"), "ts": datetime.now(CST).isoformat(timespec="seconds"),
            "counter": counter, "kind": "cash_withdrawal", "account": account, "amount": amount,
            "customer_age": 40, "account_age_days": 3000, "balance_before": amount * 10, "purpose": "daily"}
    body.update(extra)
    return body


def intercept(counter: int = 3, **extra) -> dict:
    """The 67-year-old on the phone withdrawing 50,000 yuan: must be red."""
    return event(counter, 50000, "6222020200112233445", customer_age=67, account_age_days=11000,
                 balance_before=52300, purpose="home", teller_flags=["customer_on_phone", "urgent", "declared_purpose_mismatch"],
                 **extra)


def mule(counter: int = 2, amount: float = 48000, **extra) -> dict:
    """A watchlisted mule account cashing out: red by the watchlist."""
    return event(counter, amount, MULE, customer_age=22, account_age_days=31, balance_before=49500,
                 inbound_24h=49500, inbound_count_24h=17, **extra)
