"""Provisioning on the centre's CA workstation: certificates that renew and revoke, bundles that hold
what a gateway needs and never the CA key, and a batch from a CSV of branches."""

from __future__ import annotations

import datetime as dt
import io
import os
import shutil
import stat
import subprocess
import sys
import tomllib

import pytest
from cryptography import x509

from counterguard.gateway.config import parse_config
from counterguard.core.manifest import load_public_key, load_watchlist_key
from counterguard.provisioning.bundle import CentreFiles, batch, read_branches, write_bundle
from counterguard.provisioning.ca import (
    CertificateAuthority,
    ProvisionError,
    common_name,
    find_ca_keys,
    load_cert,
)
from counterguard.provisioning.install import Branch, BranchError, systemd_unit, udev_rules

ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "counterguard", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


@pytest.fixture(scope="module")
def centre(tmp_path_factory):
    base = tmp_path_factory.mktemp("centre")
    result = cli("provision", "centre-keys", "--out", str(base / "keys"))
    assert result.returncode == 0, result.stderr
    return CentreFiles(base / "keys" / "centre-public.pem", base / "keys" / "watchlist.key")


@pytest.fixture
def ca(tmp_path):
    return CertificateAuthority.create(tmp_path / "ca")


def test_the_ca_key_is_private_and_a_second_ca_is_not_made_over_it(ca):
    assert stat.S_IMODE((ca.dir / "ca.key").stat().st_mode) == 0o600
    assert ca.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    with pytest.raises(ProvisionError, match="already exists"):
        CertificateAuthority.create(ca.dir)


def test_a_gateway_certificate_carries_its_id_as_cn_and_is_signed_by_the_ca(ca, tmp_path):
    issued = ca.issue("gw-0001", role="gateway", region="east", branch="b012", out_dir=tmp_path / "gw")
    cert = load_cert(issued.cert_path)
    assert common_name(cert) == "gw-0001" and cert.issuer == ca.cert.subject
    cert.verify_directly_issued_by(ca.cert)
    assert stat.S_IMODE(issued.key_path.stat().st_mode) == 0o600
    assert ca.gateways()[0]["region"] == "east"
    with pytest.raises(ProvisionError, match="already has a live certificate"):
        ca.issue("gw-0001", role="gateway", region="east", branch="b012", out_dir=tmp_path / "again")


@pytest.mark.parametrize("cn, region, words", [
    ("gw/1", "east", "without '/'"),
    ("gw 1", "east", "without"),
    ("gw-1", "", "region and branch are needed"),
])
def test_bad_ids_are_refused_with_the_reason(ca, tmp_path, cn, region, words):
    with pytest.raises(ProvisionError, match=words):
        ca.issue(cn, role="gateway", region=region, branch="b1", out_dir=tmp_path)


def test_renewal_happens_only_when_due_and_keeps_the_key(ca, tmp_path):
    issued = ca.issue("gw-0002", role="gateway", region="east", branch="b1", out_dir=tmp_path, days=10)
    old = load_cert(issued.cert_path)
    assert ca.renew(issued.cert_path, within_days=5) is None  # 10 days left, not due
    new = ca.renew(issued.cert_path, within_days=30, days=365)
    assert new is not None and load_cert(issued.cert_path).serial_number == new.serial_number != old.serial_number
    assert new.public_key() == old.public_key()
    assert new.not_valid_after_utc - dt.datetime.now(dt.timezone.utc) > dt.timedelta(days=360)


def test_revocation_puts_the_serial_on_the_crl_and_out_of_the_acl(ca, tmp_path):
    issued = ca.issue("gw-0003", role="gateway", region="east", branch="b1", out_dir=tmp_path)
    ca.revoke("gw-0003")
    crl = x509.load_pem_x509_crl(ca.crl_path.read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(issued.serial) is not None
    assert crl.is_signature_valid(ca.cert.public_key())
    assert ca.gateways() == []
    with pytest.raises(ProvisionError, match="revoked"):
        ca.renew(issued.cert_path, force=True)
    with pytest.raises(ProvisionError, match="no live certificate"):
        ca.revoke("gw-0003")


def test_many_certificates_are_registered_once_the_block_ends_even_after_an_error(ca, tmp_path):
    with pytest.raises(ProvisionError, match="already has a live certificate"):
        with ca.many():
            for n in range(3):
                ca.issue(f"gw-{n}", role="gateway", region="east", branch="b1", out_dir=tmp_path / str(n))
            assert CertificateAuthority(ca.dir).gateways() == []  # not written one by one
            ca.issue("gw-1", role="gateway", region="east", branch="b1", out_dir=tmp_path / "again")
    # The three issued before the refusal are in the register, so the broker's ACL lets them in.
    assert sorted(g["cn"] for g in CertificateAuthority(ca.dir).gateways()) == ["gw-0", "gw-1", "gw-2"]
    ca.issue("gw-3", role="gateway", region="east", branch="b1", out_dir=tmp_path / "3")  # written at once again
    assert len(CertificateAuthority(ca.dir).gateways()) == 4


def test_the_ca_key_is_found_wherever_it_is_copied_by_content(ca, tmp_path):
    (tmp_path / "stray").mkdir()
    shutil.copyfile(ca.dir / "ca.key", tmp_path / "stray" / "backup.pem")
    assert find_ca_keys(tmp_path / "stray", ca.cert_path) == [tmp_path / "stray" / "backup.pem"]
    ca.issue("gw-0004", role="gateway", region="east", branch="b1", out_dir=tmp_path / "gw")
    assert find_ca_keys(tmp_path / "gw", ca.cert_path) == []


def test_a_bundle_holds_what_the_gateway_needs_and_never_the_ca_key(ca, centre, tmp_path):
    branch = Branch("gw-sn-0017", "sn-xa", "xa-017", counters=2, broker_host="mq.centre.example")
    out = write_bundle(ca, branch, tmp_path / "bundles", centre)
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["config.toml", "gateway.key", "gateway.crt", "ca.crt", "centre-public.pem",
                            "watchlist.key", "pinmap.toml", "counterguard.service", "99-counterguard-serial.rules",
                            "install.sh", "SHA256SUMS"])
    assert not find_ca_keys(out, ca.cert_path) and "ca.key" not in names
    config = parse_config(tomllib.loads((out / "config.toml").read_text()))
    assert (config.gateway.id, config.gateway.region, config.gateway.branch) == ("gw-sn-0017", "sn-xa", "xa-017")
    assert [s.path for s in config.serial] == ["/dev/counterguard/counter-1", "/dev/counterguard/counter-2"]
    assert config.mqtt.host == "mq.centre.example" and config.mqtt.cert_file.endswith("gateway.crt")
    assert config.downlink.centre_public_key.endswith("centre-public.pem")
    assert common_name(load_cert(out / "gateway.crt")) == "gw-sn-0017"
    load_public_key(out / "centre-public.pem")
    assert load_watchlist_key(out / "watchlist.key") == load_watchlist_key(centre.watchlist_key)
    for secret in ("gateway.key", "watchlist.key"):
        assert stat.S_IMODE((out / secret).stat().st_mode) == 0o600
    with pytest.raises(ProvisionError, match="already exists"):
        write_bundle(ca, branch, tmp_path / "bundles", centre)


def test_the_systemd_unit_is_valid_with_watchdog_restart_and_hardening(tmp_path):
    unit = systemd_unit(Branch("gw-1", "east", "b1"), exec_path=shutil.which("true") or "/bin/true")
    for line in ("Type=notify", "WatchdogSec=30", "Restart=on-failure", "ProtectSystem=strict", "NoNewPrivileges=true",
                 "PrivateTmp=true", "ReadWritePaths=/var/lib/counterguard"):
        assert line in unit.splitlines()
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    (tmp_path / "counterguard.service").write_text(unit)
    result = subprocess.run([analyze, "verify", str(tmp_path / "counterguard.service")], capture_output=True,
                            text=True, timeout=60)
    problems = [l for l in (result.stdout + result.stderr).splitlines() if "counterguard.service" in l]
    assert result.returncode == 0 and not problems, problems


def test_the_udev_rule_names_each_counter_port_stably():
    rules = udev_rules(Branch("gw-1", "east", "b1", counters=2, ports=("serial:E6614C311B4A", "usb:1-1.3")))
    lines = [l for l in rules.splitlines() if not l.startswith("#")]
    assert lines[0].count('ATTRS{serial}=="E6614C311B4A"') == 1 and 'SYMLINK+="counterguard/counter-1"' in lines[0]
    assert 'KERNELS=="1-1.3"' in lines[1] and 'SYMLINK+="counterguard/counter-2"' in lines[1]


@pytest.mark.parametrize("branch, words", [
    (Branch("gw-1", "all", "b1"), "reserved"),
    (Branch("gw 1", "east", "b1"), "gateway_id"),
    (Branch("gw-1", "east", "b1", counters=2, ports=("usb:1-1.1",)), "1 counter port"),
    (Branch("gw-1", "east", "b1", counters=1, ports=("com3",)), "serial:<USB serial number>"),
    (Branch("gw-1", "east", "b1", counters=4, pinmap="zero2w-2counter"), "no default USB socket"),
])
def test_a_bad_branch_is_refused_naming_the_field(branch, words):
    with pytest.raises(BranchError, match=words):
        branch.check()


CSV = """gateway_id,region,branch,counters,pinmap,broker_host
gw-a-001,sn-xa,xa-001,2,pi4-4counter,mq.centre.example
gw-a-002,sn-xa,xa-002,4,pi5-4counter,mq.centre.example
gw-b-001,sn-bj,bj-001,2,zero2w-2counter,mq.centre.example
"""


def test_a_batch_makes_one_bundle_per_branch_with_a_progress_bar_and_can_be_rerun(ca, centre, tmp_path):
    (tmp_path / "branches.csv").write_text(CSV)
    progress = io.StringIO()
    done, problems = batch(ca, tmp_path / "branches.csv", tmp_path / "out", centre, progress_stream=progress)
    assert problems == [] and [p.name for p in done] == ["gw-a-001", "gw-a-002", "gw-b-001"]
    assert "3/3 gw-b-001" in progress.getvalue() and "[" in progress.getvalue()
    assert sorted(g["cn"] for g in ca.gateways()) == ["gw-a-001", "gw-a-002", "gw-b-001"]
    assert len(parse_config(tomllib.loads((tmp_path / "out" / "gw-a-002" / "config.toml").read_text())).serial) == 4
    done, problems = batch(ca, tmp_path / "branches.csv", tmp_path / "out", centre, progress_stream=io.StringIO())
    assert problems == [] and len(done) == 3 and len(ca.register()) == 3  # nothing issued twice


@pytest.mark.parametrize("text, words", [
    ("gateway_id,region\ngw-1,east\n", "column 'branch' is required"),
    ("gateway_id,region,branch,colour\ngw-1,east,b1,red\n", "unknown column"),
    ("gateway_id,region,branch,counters\ngw-1,east,b1,four\n", r"line 2: counters 'four'"),
    ("gateway_id,region,branch\ngw-1,east,b1\ngw-1,east,b2\n", "line 3: gateway_id gw-1 already on line 2"),
    ("gateway_id,region,branch\ngw-1,centre,b1\n", "line 2: region 'centre' is reserved"),
])
def test_a_bad_csv_names_the_file_line_and_field(tmp_path, text, words):
    (tmp_path / "branches.csv").write_text(text)
    with pytest.raises(BranchError, match=words):
        read_branches(tmp_path / "branches.csv")


def test_the_commands_work_end_to_end_and_errors_are_messages_not_tracebacks(tmp_path, centre):
    ca_dir = tmp_path / "ca"
    assert cli("provision", "ca", "--dir", str(ca_dir)).returncode == 0
    (tmp_path / "branches.csv").write_text(CSV)
    keys = ["--centre-public-key", str(centre.public_key), "--watchlist-key", str(centre.watchlist_key)]
    result = cli("provision", "batch", "--ca", str(ca_dir), "--csv", str(tmp_path / "branches.csv"),
                 "--out", str(tmp_path / "out"), *keys)
    assert result.returncode == 0, result.stderr
    assert "3 bundle(s)" in result.stdout and "3/3" in result.stderr
    result = cli("provision", "revoke", "--ca", str(ca_dir), "gw-a-002")
    assert result.returncode == 0 and "revoked gw-a-002" in result.stdout
    result = cli("provision", "renew", "--ca", str(ca_dir), "--bundles", str(tmp_path / "out"), "--force")
    assert result.returncode == 1 and "was revoked" in result.stderr and "Traceback" not in result.stderr
    result = cli("provision", "renew", "--ca", str(ca_dir), str(tmp_path / "out" / "gw-a-001" / "gateway.crt"), "--force")
    assert result.returncode == 0 and "renewed, valid until" in result.stdout
    result = cli("provision", "broker-config", "--ca", str(ca_dir), "--out", str(tmp_path / "broker"))
    assert result.returncode == 0 and (tmp_path / "broker" / "acl").exists()
    acl = (tmp_path / "broker" / "acl").read_text()
    assert "user gw-a-001" in acl and "user gw-a-002" not in acl
    result = cli("provision", "gateway", "--ca", str(tmp_path / "nowhere"), "--id", "gw-x", "--region", "e",
                 "--branch", "b", "--out", str(tmp_path / "o"), *keys)
    assert result.returncode == 1 and "no CA here" in result.stderr and "Traceback" not in result.stderr


def test_the_broker_config_ties_client_ids_to_certificates_limits_messages_and_keeps_the_key_private(tmp_path):
    assert cli("provision", "ca", "--dir", str(tmp_path / "ca")).returncode == 0
    out = tmp_path / "broker"
    # A tight umask on the CA workstation must not leave mosquitto unable to read the public files.
    result = subprocess.run([sys.executable, "-m", "counterguard", "provision", "broker-config", "--ca",
                             str(tmp_path / "ca"), "--out", str(out), "--user", "no-such-user-cg"],
                            capture_output=True, text=True, timeout=120, preexec_fn=lambda: os.umask(0o077))
    assert result.returncode == 0, result.stderr
    # The user is on another machine (the broker): the command says what to run there.
    assert "user 'no-such-user-cg' does not exist" in result.stderr and "chmod 0640 broker.key" in result.stderr
    conf = (out / "mosquitto.conf").read_text().splitlines()
    for line in ("user no-such-user-cg", "use_identity_as_username true", "use_username_as_clientid true",
                 "message_size_limit 1048576"):
        assert line in conf
    assert conf.index("use_username_as_clientid true") > conf.index("use_identity_as_username true")
    assert stat.S_IMODE((out / "broker.key").stat().st_mode) == 0o600
    for name in ("ca.crt", "crl.pem", "acl", "broker.crt", "mosquitto.conf"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o644, name
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    result = cli("provision", "broker-config", "--ca", str(tmp_path / "ca"), "--out", str(out),
                 "--message-size-limit", "1000")
    assert result.returncode == 1 and "too small for a signed model manifest" in result.stderr
    assert "Traceback" not in result.stderr
