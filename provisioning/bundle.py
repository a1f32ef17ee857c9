"""One bundle per gateway, ready to copy to its SD card; and a batch of them from a CSV of branches.

A bundle holds exactly what the gateway needs and nothing it must not have::

    config.toml  gateway.key  gateway.crt  ca.crt  centre-public.pem  watchlist.key  pinmap.toml
    counterguard.service  99-counterguard-serial.rules  install.sh  SHA256SUMS

Never the CA key: every bundle is searched for it after writing, and one that holds it is deleted
and reported. The branches CSV has a header row; ``gateway_id``, ``region`` and ``branch`` are
required, ``counters``, ``pinmap``, ``broker_host``, ``broker_port`` and ``ports`` (space-separated
``serial:...`` / ``usb:...``, one per counter) are optional::

    gateway_id,region,branch,counters,pinmap,broker_host
    gw-sn-xa-0017,sn-xa,xa-yanta-017,2,pi4-4counter,mq.centre.example
"""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from counterguard.core.manifest import ManifestError, load_public_key, load_watchlist_key, write_private
from counterguard.gateway.config import ConfigError
from counterguard.hardware.pinmap import PinMapError, load_pinmap, pinmap_dir
from counterguard.provisioning.ca import CertificateAuthority, ProvisionError, find_ca_keys
from counterguard.provisioning.install import (
    SERVICE,
    UDEV_RULE,
    Branch,
    BranchError,
    gateway_config,
    install_script,
    systemd_unit,
    udev_rules,
)

DONE = "SHA256SUMS"  # written last: a bundle without it is incomplete
COLUMNS = ("gateway_id", "region", "branch", "counters", "pinmap", "broker_host", "broker_port", "ports")


@dataclass(frozen=True)
class CentreFiles:
    """What every bundle shares: the centre's public signing key and the watchlist hashing key."""

    public_key: Path
    watchlist_key: Path

    def check(self) -> "CentreFiles":
        load_public_key(self.public_key)       # ManifestError names the file
        load_watchlist_key(self.watchlist_key)
        return self


def pinmap_file(name: str) -> Path:
    """A bundled pin map by name (pi4-4counter ...) or a path to one."""
    path = Path(name)
    if path.suffix != ".toml":
        path = pinmap_dir() / f"{name}.toml"
    return path


def write_bundle(ca: CertificateAuthority, branch: Branch, out_root, centre: CentreFiles, *, days: int = 365) -> Path:
    """Write ``out_root/<gateway_id>/`` for ``branch``; returns its directory."""
    branch.check(branch.gateway_id)
    out = Path(out_root) / branch.gateway_id
    if (out / DONE).exists():
        raise ProvisionError(f"{out}: a bundle for {branch.gateway_id} already exists; remove it to make a new one")
    try:
        pinmap = load_pinmap(pinmap_file(branch.pinmap))
    except PinMapError as exc:
        raise BranchError(f"{branch.gateway_id}: pinmap {branch.pinmap!r}: {exc}") from None
    missing = [n for n in range(1, branch.counters + 1) if n not in pinmap.counters]
    if missing:
        raise BranchError(f"{branch.gateway_id}: pin map {pinmap.name} has no lamps for counter(s) "
                          f"{', '.join(map(str, missing))}; choose a pin map with {branch.counters} counters")
    config = gateway_config(branch)  # validated before any key is made
    if out.exists():
        shutil.rmtree(out)  # an interrupted earlier attempt
    out.mkdir(parents=True)
    os.chmod(out, 0o700)
    ca.issue(branch.gateway_id, role="gateway", region=branch.region, branch=branch.branch, out_dir=out,
             days=days, name="gateway")
    shutil.copyfile(ca.cert_path, out / "ca.crt")
    shutil.copyfile(centre.public_key, out / "centre-public.pem")
    write_private(out / "watchlist.key", centre.watchlist_key.read_bytes())
    shutil.copyfile(pinmap.source or pinmap_file(branch.pinmap), out / "pinmap.toml")
    (out / "config.toml").write_text(config)
    (out / SERVICE).write_text(systemd_unit(branch))
    (out / UDEV_RULE).write_text(udev_rules(branch))
    (out / "install.sh").write_text(install_script(branch))
    os.chmod(out / "install.sh", 0o755)
    leaked = find_ca_keys(out, ca.cert_path)
    if leaked:
        shutil.rmtree(out)
        raise ProvisionError(f"DANGER: the CA private key ended up in the bundle for {branch.gateway_id} "
                             f"({', '.join(p.name for p in leaked)}); the bundle was deleted. Keep the CA key "
                             "only on the offline CA machine.")
    sums = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}" for p in sorted(out.iterdir()) if p.is_file()]
    (out / DONE).write_text("\n".join(sums) + "\n")
    return out


def read_branches(path) -> list[Branch]:
    """Rows of a branches CSV; BranchError names the file, line and field of the first bad one."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise BranchError(f"{path}: no such branches file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BranchError(f"{path}: cannot read: {exc}") from None
    reader = csv.DictReader(text.splitlines())
    header = reader.fieldnames or []
    unknown = [c for c in header if c not in COLUMNS]
    if unknown:
        raise BranchError(f"{path}, line 1: unknown column(s) {', '.join(unknown)}; columns are {', '.join(COLUMNS)}")
    for need in ("gateway_id", "region", "branch"):
        if need not in header:
            raise BranchError(f"{path}, line 1: column {need!r} is required")
    branches, seen = [], {}
    for row in reader:
        where = f"{path}, line {reader.line_num}"
        values = {k: (v or "").strip() for k, v in row.items() if k is not None}
        if None in row:
            raise BranchError(f"{where}: more fields than columns")
        kw = {k: values[k] for k in ("gateway_id", "region", "branch")}
        for name in ("counters", "broker_port"):
            if values.get(name):
                try:
                    kw[name] = int(values[name])
                except ValueError:
                    raise BranchError(f"{where}: {name} {values[name]!r} is not a whole number") from None
        for name in ("pinmap", "broker_host"):
            if values.get(name):
                kw[name] = values[name]
        if values.get("ports"):
            kw["ports"] = tuple(values["ports"].split())
        branch = Branch(**kw).check(where)
        if branch.gateway_id in seen:
            raise BranchError(f"{where}: gateway_id {branch.gateway_id} already on line {seen[branch.gateway_id]}")
        seen[branch.gateway_id] = reader.line_num
        branches.append(branch)
    if not branches:
        raise BranchError(f"{path}: no branches (only a header?)")
    return branches


class Progress:
    """A one-line progress bar on a terminal (plain lines otherwise, so logs stay readable)."""

    def __init__(self, total: int, stream=None, width: int = 30):
        self.total, self.stream, self.width = total, stream or sys.stderr, width
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def show(self, done: int, label: str) -> None:
        filled = int(self.width * done / self.total) if self.total else self.width
        bar = f"[{'#' * filled}{'.' * (self.width - filled)}] {done}/{self.total} {label}"
        if self.tty:
            self.stream.write("\r" + bar.ljust(self.width + 40))
            if done == self.total:
                self.stream.write("\n")
        else:
            self.stream.write(bar + "\n")
        self.stream.flush()


def batch(ca: CertificateAuthority, csv_path, out_root, centre: CentreFiles, *, days: int = 365,
          progress_stream=None) -> tuple[list[Path], list[str]]:
    """Bundles for every branch in the CSV. A bundle already complete is kept (so a batch can be
    re-run after fixing a row); a row that fails is reported and the rest go on.
    Returns (bundles written or kept, problems)."""
    centre.check()
    branches = read_branches(csv_path)  # the whole file is checked before any key is made
    bar = Progress(len(branches), progress_stream)
    done, problems = [], []
    with ca.many():
        for i, branch in enumerate(branches, 1):
            out = Path(out_root) / branch.gateway_id
            try:
                if (out / DONE).exists():
                    done.append(out)
                else:
                    done.append(write_bundle(ca, branch, out_root, centre, days=days))
            except (ProvisionError, BranchError, ManifestError, ConfigError, OSError) as exc:
                problems.append(f"{branch.gateway_id}: {exc}")
            bar.show(i, branch.gateway_id)
    return done, problems
