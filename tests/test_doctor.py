"""counterguard doctor on a gateway installed from a real bundle: each problem an installer meets is
found and the line says what to fix."""

from __future__ import annotations

import getpass
import io
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from counterguard.gateway.ops import doctor
from counterguard.gateway.link.broker import free_port
from counterguard.core.manifest import (
    generate_signing_key,
    generate_watchlist_key,
    save_public_key,
    save_watchlist_key,
)
from harness import pty_pair
from counterguard.provisioning.broker_config import write_broker_config
from counterguard.provisioning.bundle import CentreFiles, write_bundle
from counterguard.provisioning.ca import CertificateAuthority
from counterguard.provisioning.install import Branch
from test_broker_acl import TlsBroker


def install(bundle: Path, root: Path, serial_paths: list[str], broker_port: int) -> Path:
    """Lay the bundle out as install.sh would, with paths under ``root`` instead of /etc."""
    etc = root / "etc"
    shutil.copytree(bundle, etc)
    text = (bundle / "config.toml").read_text().replace("/etc/counterguard", str(etc))
    text = text.replace("/var/lib/counterguard", str(root / "data")).replace('pins = "real"', 'pins = "mock"')
    text = text.replace('host = "mq.centre.example"', 'host = "127.0.0.1"').replace("port = 8883", f"port = {broker_port}")
    for n, path in enumerate(serial_paths, 1):
        text = text.replace(f"/dev/counterguard/counter-{n}", path)
    (root / "data").mkdir()
    (etc / "config.toml").write_text(text)
    return etc / "config.toml"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    base = tmp_path_factory.mktemp("doctor")
    ca = CertificateAuthority.create(base / "ca")
    key = generate_signing_key()
    save_public_key(key, base / "centre-public.pem")
    save_watchlist_key(generate_watchlist_key(), base / "watchlist.key")
    centre = CentreFiles(base / "centre-public.pem", base / "watchlist.key")
    bundles = {}
    for gid, days in (("gw-good", 365), ("gw-soon", 10), ("gw-gone", 365)):
        bundles[gid] = write_bundle(ca, Branch(gid, "east", f"b-{gid}", counters=2, broker_host="mq.centre.example"),
                                    base / "bundles", centre, days=days)
    ca.revoke("gw-gone")
    conf = write_broker_config(ca, base / "broker", host="127.0.0.1", port=free_port(), run_as=getpass.getuser())
    broker = TlsBroker(conf).start()
    yield base, ca, bundles, broker
    broker.stop()


def findings(config_path) -> dict:
    return {f.check: f for f in doctor.diagnose(config_path, broker_timeout=20)}


def test_a_healthy_install_passes_every_check_it_can_see(site, tmp_path):
    base, ca, bundles, broker = site
    with pty_pair() as (_, one), pty_pair() as (_, two):
        result = findings(install(bundles["gw-good"], tmp_path, [one, two], broker.port))
    for check in ("config", "serial counter 1", "serial counter 2", "pins", "CA certificate", "gateway certificate",
                  "CA key", "centre key", "watchlist key", "broker", "disk"):
        assert result[check].status == doctor.OK, result[check].line()
    assert "accepted this gateway over TLS" in result["broker"].message
    assert result["gpio"].status == doctor.WARN and "NOT driven" in result["gpio"].message  # mock pins in this test
    assert "clock" in result  # OK or not depends on this machine's own NTP state


def test_a_missing_counter_port_says_to_check_the_node_and_udev_rule(site, tmp_path):
    base, ca, bundles, broker = site
    with pty_pair() as (_, one):
        result = findings(install(bundles["gw-good"], tmp_path, [one, "/dev/counterguard/counter-2"], broker.port))
    assert result["serial counter 1"].status == doctor.OK
    assert result["serial counter 2"].status == doctor.FAIL
    assert "udev rule" in result["serial counter 2"].message


def test_a_certificate_expiring_soon_is_a_warning_with_the_renew_command(site, tmp_path):
    base, ca, bundles, broker = site
    result = findings(install(bundles["gw-soon"], tmp_path, [], broker.port))
    assert result["gateway certificate"].status == doctor.WARN
    assert "provision renew" in result["gateway certificate"].message


def test_a_revoked_gateway_is_told_the_broker_refuses_it(site, tmp_path):
    base, ca, bundles, broker = site
    result = findings(install(bundles["gw-gone"], tmp_path, [], broker.port))
    assert result["broker"].status == doctor.FAIL and "revoked" in result["broker"].message


def test_an_unreachable_broker_is_a_failure_naming_host_and_port(site, tmp_path):
    base, ca, bundles, broker = site
    port = free_port()
    result = findings(install(bundles["gw-good"], tmp_path, [], port))
    assert result["broker"].status == doctor.FAIL and f"127.0.0.1:{port}" in result["broker"].message


def test_the_ca_key_on_a_gateway_is_a_loud_failure(site, tmp_path):
    base, ca, bundles, broker = site
    config = install(bundles["gw-good"], tmp_path, [], broker.port)
    shutil.copyfile(ca.dir / "ca.key", config.parent / "backup.key")
    result = findings(config)
    assert result["CA key"].status == doctor.FAIL and "DANGER" in result["CA key"].message
    assert "backup.key" in result["CA key"].message


def test_someone_elses_certificate_is_caught_by_its_cn(site, tmp_path):
    base, ca, bundles, broker = site
    config = install(bundles["gw-good"], tmp_path, [], broker.port)
    for name in ("gateway.crt", "gateway.key"):
        shutil.copyfile(bundles["gw-soon"] / name, config.parent / name)
    result = doctor.diagnose(config, broker_timeout=20)
    assert any(f.status == doctor.FAIL and "is not gateway.id 'gw-good'" in f.message for f in result)


def test_a_bad_config_key_is_named_and_the_command_exits_1(tmp_path):
    (tmp_path / "config.toml").write_text("[mqtt]\nport = 70000\n")
    out = io.StringIO()
    assert doctor.run_doctor(tmp_path / "config.toml", out) == 1
    assert "mqtt.port" in out.getvalue() and out.getvalue().startswith("FAIL config")
    result = subprocess.run([sys.executable, "-m", "counterguard", "doctor", "--config", str(tmp_path / "config.toml")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "FAIL config" in result.stdout and "1 failed" in result.stdout


def test_doctor_beside_a_running_gateway_checks_the_broker_without_taking_its_session(site, tmp_path):
    # The broker gives a certificate's one MQTT session to whoever connected last: a full connect from
    # the doctor would throw the running gateway off and the centre would see its offline will.
    import json
    import os
    import threading

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    base, ca, bundles, broker = site
    config = install(bundles["gw-good"], tmp_path, [], broker.port)
    etc = config.parent
    (tmp_path / "data" / "counter-lines.json").write_text(json.dumps({"pid": os.getpid(), "lines": {}}))
    connected, dropped = threading.Event(), threading.Event()
    gateway = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="gw-good")  # stands in for the running service
    gateway.tls_set(ca_certs=str(etc / "ca.crt"), certfile=str(etc / "gateway.crt"), keyfile=str(etc / "gateway.key"))
    gateway.on_connect = lambda *a: connected.set()
    gateway.on_disconnect = lambda *a: dropped.set()
    gateway.connect("127.0.0.1", broker.port, keepalive=10)
    gateway.loop_start()
    try:
        assert connected.wait(20)
        result = findings(config)
        assert result["broker"].status == doctor.OK and "only the TLS handshake" in result["broker"].message
        assert not dropped.wait(1.5), "the doctor took the running gateway's session"
    finally:
        gateway.disconnect()
        gateway.loop_stop()


def test_a_revoked_gateway_is_told_so_by_the_handshake_too_while_it_runs(site, tmp_path):
    import json
    import os

    base, ca, bundles, broker = site
    config = install(bundles["gw-gone"], tmp_path, [], broker.port)
    (tmp_path / "data" / "counter-lines.json").write_text(json.dumps({"pid": os.getpid(), "lines": {}}))
    result = findings(config)
    assert result["broker"].status == doctor.FAIL and "revoked" in result["broker"].message
