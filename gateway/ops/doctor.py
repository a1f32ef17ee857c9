"""``counterguard doctor``: check a gateway the way an installer would, and say what to fix.

One line per check: ``OK``, ``WARN`` (works, but look at it) or ``FAIL`` (the gateway will not do
its job), each failure with the fix. Checks: the config file, the counter serial ports, the pin map
and GPIO, clock sync, the certificates (expiry, CA, key, CN), the CA key not being here, the centre
keys, broker reachability (TLS and MQTT, as this gateway), free disk space, and the running
gateway's counter lines (restarted after a fault, or given up on). Nothing is changed.

    counterguard doctor --config /etc/counterguard/config.toml     # exit 1 if anything FAILed
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

OK, WARN, FAIL = "OK", "WARN", "FAIL"
CERT_WARN_DAYS = 30
DISK_WARN_BYTES = 1 << 30   # 1 GiB: months of events, but time to look
DISK_FAIL_BYTES = 200 << 20  # 200 MiB: SQLite may soon fail to commit verdicts
BROKER_TIMEOUT_S = 8.0


@dataclass(frozen=True)
class Finding:
    status: str
    check: str
    message: str

    def line(self) -> str:
        return f"{self.status:<4} {self.check}: {self.message}"


def _config(path):
    from counterguard.gateway.config import ConfigError, load_config

    try:
        return load_config(path), None
    except ConfigError as exc:
        if not Path(path).exists():  # nothing to fix yet: the message already says what to write
            return None, Finding(FAIL, "config", str(exc))
        return None, Finding(FAIL, "config", f"{exc}; fix it (counterguard check-config {path} lists every problem)")


def check_serial(config) -> list[Finding]:
    if not config.serial:
        return [Finding(WARN, "serial", "no [[serial]] port configured: this gateway has no counter lines")]
    found = []
    for port in config.serial:
        name = port.name or port.path
        path = Path(port.path)
        if not path.exists():
            found.append(Finding(FAIL, f"serial {name}", f"{port.path} does not exist; plug in the counter node and "
                                 "check the udev rule (/etc/udev/rules.d/99-counterguard-serial.rules, "
                                 "'udevadm info -a /dev/ttyACM0')"))
        elif not stat.S_ISCHR(path.stat().st_mode):
            found.append(Finding(FAIL, f"serial {name}", f"{port.path} is not a serial device; fix serial.path"))
        elif not os.access(path, os.R_OK | os.W_OK):
            found.append(Finding(FAIL, f"serial {name}", f"{port.path} is not readable and writable by this user; "
                                 "add the counterguard user to the dialout group"))
        else:
            found.append(Finding(OK, f"serial {name}", f"{port.path} -> {os.path.realpath(port.path)}"))
    return found


def check_pins(config) -> list[Finding]:
    from counterguard.hardware.pinmap import PinMapError, default_pinmap_path, load_pinmap

    try:
        pinmap = load_pinmap(config.lamps.pinmap or default_pinmap_path())
    except PinMapError as exc:
        return [Finding(FAIL, "pins", f"{exc}; fix lamps.pinmap")]
    counters = len(config.serial)
    missing = [i for i in range(1, counters + 1) if i not in pinmap.counters]
    found = [Finding(FAIL, "pins", f"pin map {pinmap.name} has no lamps for counter(s) {missing}; choose a pin map "
                     "with enough counters") if missing else
             Finding(OK, "pins", f"pin map {pinmap.name}: {len(pinmap.counters)} counter(s), supervisor panel")]
    if config.lamps.pins == "mock":
        found.append(Finding(WARN, "gpio", "lamps.pins = mock: the lamps and buzzer are NOT driven; set it to real"))
    else:
        chips = sorted(Path("/dev").glob("gpiochip*"))
        usable = [c for c in chips if os.access(c, os.R_OK | os.W_OK)]
        if usable:
            found.append(Finding(OK, "gpio", f"{', '.join(c.name for c in usable)} usable"))
        elif chips:
            found.append(Finding(FAIL, "gpio", f"{chips[0]} is not accessible; add the counterguard user to the gpio group"))
        else:
            found.append(Finding(WARN if config.lamps.pins == "auto" else FAIL, "gpio",
                                 "no /dev/gpiochip*: not a Raspberry Pi, lamps will be mocked" if config.lamps.pins == "auto"
                                 else "no /dev/gpiochip*: GPIO is missing; this is not a Raspberry Pi or the kernel lacks it"))
    return found


def check_clock() -> list[Finding]:
    from counterguard.core.clock import _kernel_synced

    synced = _kernel_synced()
    if synced:
        return [Finding(OK, "clock", "synchronised (kernel reports NTP sync)")]
    if synced is False:
        return [Finding(FAIL, "clock", "not synchronised: alert times will be flagged unsynced; enable "
                        "systemd-timesyncd or chrony and let it reach a time server ('timedatectl status')")]
    return [Finding(WARN, "clock", "cannot tell whether the clock is synchronised on this system")]


def check_certificates(config, *, now=None) -> list[Finding]:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    m = config.mqtt
    if not m.ca_file:
        return [Finding(WARN, "certificates", "mqtt.ca_file is empty: plain MQTT without TLS; only on loopback or a "
                        "trusted test LAN (install the bundle's ca.crt, gateway.crt, gateway.key)")]
    now = now or dt.datetime.now(dt.timezone.utc)
    found = []
    try:
        ca = x509.load_pem_x509_certificate(Path(m.ca_file).read_bytes())
        cert = x509.load_pem_x509_certificate(Path(m.cert_file).read_bytes())
    except (OSError, ValueError) as exc:
        return [Finding(FAIL, "certificates", f"cannot read mqtt.ca_file / mqtt.cert_file: {exc}; copy them from the "
                        "gateway's bundle")]
    for name, c, key in (("CA certificate", ca, "mqtt.ca_file"), ("gateway certificate", cert, "mqtt.cert_file")):
        left = c.not_valid_after_utc - now
        days = left.total_seconds() / 86400
        if days < 0:
            found.append(Finding(FAIL, name, f"{key} expired on {c.not_valid_after_utc:%Y-%m-%d}; the broker refuses it: "
                                 "renew it ('counterguard provision renew' at the centre) and copy it here"))
        elif days < CERT_WARN_DAYS:
            found.append(Finding(WARN, name, f"{key} expires in {days:.0f} days ({c.not_valid_after_utc:%Y-%m-%d}); "
                                 "renew it now ('counterguard provision renew')"))
        else:
            found.append(Finding(OK, name, f"valid until {c.not_valid_after_utc:%Y-%m-%d} ({days:.0f} days)"))
    if cert.issuer != ca.subject:
        found.append(Finding(FAIL, "gateway certificate", f"issued by {cert.issuer.rfc4514_string()}, not by the CA in "
                             "mqtt.ca_file; install the matching bundle"))
    cn = next((a.value for a in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)), "")
    if cn != config.gateway.id:
        found.append(Finding(FAIL, "gateway certificate", f"CN {cn!r} is not gateway.id {config.gateway.id!r}; the broker "
                             "ACL will refuse this gateway's topics: install its own bundle"))
    try:
        key = serialization.load_pem_private_key(Path(m.key_file).read_bytes(), password=None)
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        if key.public_key().public_bytes(serialization.Encoding.PEM, spki) != \
                cert.public_key().public_bytes(serialization.Encoding.PEM, spki):
            found.append(Finding(FAIL, "gateway key", "mqtt.key_file does not belong to mqtt.cert_file; install the "
                                 "key from the same bundle"))
    except (OSError, ValueError, TypeError) as exc:
        found.append(Finding(FAIL, "gateway key", f"cannot read mqtt.key_file: {exc}"))
    return found


def check_no_ca_key(config) -> list[Finding]:
    from counterguard.core.pki import find_ca_keys

    places = {Path(config.source).parent if config.source else None, Path(config.gateway.data_dir)}
    if config.mqtt.ca_file:
        places.add(Path(config.mqtt.ca_file).parent)
    leaked = [p for d in sorted(filter(None, places), key=str)
              for p in find_ca_keys(d, config.mqtt.ca_file or None)]
    if leaked:
        return [Finding(FAIL, "CA key", f"DANGER: the CA private key is on this gateway ({', '.join(map(str, leaked))}); "
                        "anyone with this SD card can make certificates for any gateway. Delete it here "
                        "(shred -u), and have the centre consider the CA compromised")]
    return [Finding(OK, "CA key", "not on this gateway")]


def check_downlink(config) -> list[Finding]:
    from counterguard.core.manifest import ManifestError, key_id, load_public_key, load_watchlist_key

    d = config.downlink
    if not d.centre_public_key:
        return [Finding(WARN, "downlink", "downlink.centre_public_key is empty: signed models, thresholds and "
                        "watchlists from the centre are not accepted")]
    found = []
    try:
        found.append(Finding(OK, "centre key", f"key id {key_id(load_public_key(d.centre_public_key))}"))
    except ManifestError as exc:
        found.append(Finding(FAIL, "centre key", f"{exc}; copy centre-public.pem from the bundle"))
    if d.watchlist_key:
        try:
            load_watchlist_key(d.watchlist_key)
            found.append(Finding(OK, "watchlist key", f"{d.watchlist_key} (version {d.watchlist_key_version})"))
        except ManifestError as exc:
            found.append(Finding(FAIL, "watchlist key", f"{exc}; copy watchlist.key from the bundle"))
    else:
        found.append(Finding(WARN, "watchlist key", "downlink.watchlist_key is empty: the centre's hashed watchlist "
                             "will not match here"))
    return found


def check_broker(config, timeout: float = BROKER_TIMEOUT_S) -> list[Finding]:
    """Connect as this gateway (its own certificate) and disconnect; while the gateway runs, only
    the TLS handshake: the broker gives a certificate's one MQTT session to whoever connected last,
    so a full connect from here would throw the running gateway off and set off its offline will."""
    if _gateway_running(config):
        return _check_handshake(config, timeout)
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    m = config.mqtt
    where = f"{m.host}:{m.port}"
    result: dict = {}
    done = threading.Event()

    def on_connect(client, userdata, flags, reason_code, properties):
        result["rc"] = reason_code
        done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{config.gateway.id}-doctor")
    client.on_connect = on_connect
    client.on_disconnect = lambda *a: done.set()
    try:
        if m.ca_file:
            client.tls_set(ca_certs=m.ca_file, certfile=m.cert_file or None, keyfile=m.key_file or None)
        client.connect(m.host, m.port, keepalive=10)
    except (OSError, ValueError) as exc:
        return [Finding(FAIL, "broker", f"cannot reach {where}: {exc}; check mqtt.host/mqtt.port, the branch "
                        "network and firewall, and that the certificates are the bundle's")]
    client.loop_start()
    try:
        done.wait(timeout)
    finally:
        client.disconnect()
        client.loop_stop()
    rc = result.get("rc")
    if rc is None:
        return [Finding(FAIL, "broker", f"{where} did not accept this gateway within {timeout:.0f} s (TLS refused: "
                        "certificate revoked, expired or from another CA?); run the checks above and ask the centre")]
    if rc.is_failure:
        return [Finding(FAIL, "broker", f"{where} refused the connection: {rc}")]
    return [Finding(OK, "broker", f"{where} accepted this gateway" + (" over TLS" if m.ca_file else ""))]


def _gateway_running(config) -> bool:
    from counterguard.gateway.counter.counter_line import STATUS_FILE

    try:
        return _pid_running(json.loads((config.store_path.parent / STATUS_FILE).read_text()).get("pid"))
    except (OSError, ValueError, AttributeError):
        return False


def _check_handshake(config, timeout: float) -> list[Finding]:
    """The running gateway's view of the broker without taking its session: TCP, then TLS with its
    certificate (a revoked or foreign one is refused here too), then silence while the broker waits
    for an MQTT CONNECT that never comes."""
    import socket
    import ssl

    m = config.mqtt
    where = f"{m.host}:{m.port}"
    note = " (the gateway is running, so only the TLS handshake was tried: a full connect would take its session)"
    try:
        with socket.create_connection((m.host, m.port), timeout=timeout) as raw:
            if not m.ca_file:
                return [Finding(OK, "broker", f"{where} is listening" + note.replace("TLS handshake", "TCP connection"))]
            ctx = ssl.create_default_context(cafile=m.ca_file)
            ctx.load_cert_chain(m.cert_file, m.key_file or None)
            with ctx.wrap_socket(raw, server_hostname=m.host) as tls:
                tls.settimeout(min(timeout, 2.0))
                try:
                    closed = tls.recv(1) == b""
                except TimeoutError:
                    closed = False  # the broker is waiting for CONNECT: the certificate was accepted
    except ssl.SSLError as exc:
        return [Finding(FAIL, "broker", f"{where} refused this gateway's TLS handshake ({exc.reason or exc}): "
                        "certificate revoked, expired or from another CA?; run the checks above and ask the centre")]
    except OSError as exc:
        return [Finding(FAIL, "broker", f"cannot reach {where}: {exc}; check mqtt.host/mqtt.port, the branch "
                        "network and firewall")]
    if closed:
        return [Finding(FAIL, "broker", f"{where} closed the connection after the TLS handshake: certificate "
                        "revoked?; ask the centre")]
    return [Finding(OK, "broker", f"{where} accepted this gateway's certificate over TLS" + note)]


def _pid_running(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except PermissionError:
        return True  # running as another user (the service's own)
    except (OSError, TypeError, ValueError):
        return False
    return True


def check_counter_lines(config) -> list[Finding]:
    """What the gateway last wrote about its counter lines (counter-lines.json beside the store):
    a line restarted after a fault, or one given up on, is said here with its last fault."""
    from counterguard.gateway.counter.counter_line import STATUS_FILE

    path = config.store_path.parent / STATUS_FILE
    try:
        status = json.loads(path.read_text())
        lines = status["lines"]
        lines.items()
    except FileNotFoundError:
        return [Finding(WARN, "counter lines", f"no {path}: the gateway has not run with this config yet")]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return [Finding(WARN, "counter lines", f"cannot read {path} ({exc}); restart the gateway to rewrite it")]
    running = _pid_running(status.get("pid"))
    when = f" (gateway pid {status.get('pid')}, written {status.get('written_at')})"
    found = []
    if not running:
        found.append(Finding(WARN, "counter lines", f"the gateway is not running{when}; what follows is from its "
                             "last run ('systemctl status counterguard')"))
    journal = "journalctl -u counterguard | grep 'counter line'"
    for name, line in lines.items():
        check = f"counter line {name}"
        restarts, faults = int(line.get("restarts") or 0), int(line.get("faults") or 0)
        last = line.get("last_fault") or "unknown"
        if line.get("thread") == "dead":
            found.append(Finding(FAIL, check, f"stopped {restarts + 1} times and was given up on (last fault: {last}); "
                                 f"its counter gets no verdicts until the service restarts ('systemctl restart "
                                 f"counterguard'); send the log to support ({journal})"))
        elif restarts:
            found.append(Finding(WARN, check, f"{line.get('thread')}, but restarted {restarts} time(s) after a fault "
                                 f"(last fault: {last}); its lamps flashed the fault; send the log to support ({journal})"))
        elif faults:
            found.append(Finding(WARN, check, f"{line.get('thread')}; survived {faults} failed turn(s) (last fault: "
                                 f"{last}); see {journal}"))
        else:
            found.append(Finding(OK, check, f"{line.get('thread')}, no faults" + ("" if running else when)))
    return found


def check_disk(config) -> list[Finding]:
    path = Path(config.gateway.data_dir)
    probe = path if path.exists() else next((p for p in path.parents if p.exists()), Path("/"))
    free = shutil.disk_usage(probe).free
    text = f"{free / (1 << 30):.1f} GiB free at {probe}"
    if free < DISK_FAIL_BYTES:
        return [Finding(FAIL, "disk", f"{text}: the store may fail to commit verdicts; free space or use a bigger SD card")]
    if free < DISK_WARN_BYTES:
        return [Finding(WARN, "disk", f"{text}; lower store.keep_days or free space")]
    return [Finding(OK, "disk", text)]


def diagnose(config_path, *, broker_timeout: float = BROKER_TIMEOUT_S) -> list[Finding]:
    config, problem = _config(config_path)
    if problem:
        return [problem]
    findings = [Finding(OK, "config", f"{config_path}: gateway {config.gateway.id}, branch {config.gateway.branch}")]
    for check in (check_serial, check_pins, lambda c: check_clock(), check_certificates, check_no_ca_key,
                  check_downlink, lambda c: check_broker(c, broker_timeout), check_disk, check_counter_lines):
        try:
            findings += check(config)
        except Exception as exc:  # a check that breaks is itself a finding, and the others still run
            findings.append(Finding(FAIL, getattr(check, "__name__", "check"), f"could not check: {exc}"))
    return findings


def run_doctor(config_path, out) -> int:
    findings = diagnose(config_path)
    for f in findings:
        out.write(f.line() + "\n")
    failed = sum(f.status == FAIL for f in findings)
    warned = sum(f.status == WARN for f in findings)
    out.write(f"{len(findings)} checks: {failed} failed, {warned} warnings\n")
    return 1 if failed else 0
