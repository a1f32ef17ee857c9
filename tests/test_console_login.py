"""Who can log in to the branch console, from where, and how: a real gateway serving the console on
loopback, driven over real HTTP (and HTTPS) from several loopback source addresses at once."""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import ssl
import subprocess
import sys
import threading
import urllib.parse

import pytest
from gpiozero.pins.mock import MockFactory

from counterguard.gateway.ops.app import Gateway
from counterguard.gateway.config import Config, ConfigError
from counterguard.core import weblogin as auth
from counterguard.core.weblogin import FAILURES_ALLOWED, LockedOut, Sessions
from counterguard.gateway.branch.console.server import BranchConsole
from harness import gateway_config
from test_console import PASSWORD, PASSWORD_HASH, ROSTER, browser  # noqa: F401  (fixture)

WRONG_OR_UNKNOWN = "Staff number or password is wrong".encode()


@pytest.fixture
def checks(monkeypatch):
    """Every real password check (scrypt) the console makes, counted where auth calls it."""
    seen = []
    lock = threading.Lock()
    real = auth.verify_password

    def counted(password, stored):
        with lock:
            seen.append(password)
        return real(password, stored)

    monkeypatch.setattr(auth, "verify_password", counted)
    return seen


def start_gateway(tmp_path, broker, **console):
    cfg = gateway_config(tmp_path, broker_port=broker.port, serial_path=None)
    settings = {"enabled": True, "port": 0, "password_hash": PASSWORD_HASH, "staff": ROSTER} | console
    return Gateway(cfg.with_changes("console", **settings), pin_factory=MockFactory()).start()


@pytest.fixture
def gateway(tmp_path, broker):
    gw = start_gateway(tmp_path, broker)
    yield gw
    gw.stop()


def login(port: int, staff: str, password: str, *, source: str = "127.0.0.1", tls: ssl.SSLContext | None = None):
    """One login form post from ``source`` (any 127.x address reaches the console); status, cookie, page."""
    kind = http.client.HTTPSConnection if tls else http.client.HTTPConnection
    extra = {"context": tls} if tls else {}
    conn = kind("127.0.0.1", port, timeout=60, source_address=(source, 0), **extra)
    try:
        conn.request("POST", "/login", urllib.parse.urlencode({"staff": staff, "password": password}),
                     {"Content-Type": "application/x-www-form-urlencoded"})
        res = conn.getresponse()
        return res.status, res.getheader("Set-Cookie"), res.read()
    finally:
        conn.close()


def test_forty_parallel_wrong_passwords_get_five_password_checks_then_lock_everyone_out(gateway, checks):
    port = gateway.branch_console.port
    start = threading.Barrier(40)
    statuses = []

    def guess(i):
        start.wait(30)
        statuses.append(login(port, "S1024", f"guess-{i}")[0])

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(statuses) == 40
    assert len(checks) == FAILURES_ALLOWED == gateway.branch_console.sessions.password_checks
    assert sorted(statuses) == [401] * FAILURES_ALLOWED + [429] * (40 - FAILURES_ALLOWED)
    # Now even the right password waits: from this address, and for this staff number from any address.
    status, cookie, _ = login(port, "S1024", PASSWORD)
    assert (status, cookie) == (429, None)
    assert login(port, "S1024", PASSWORD, source="127.0.0.2")[0] == 429
    assert len(checks) == FAILURES_ALLOWED
    # A colleague at another tablet is not locked out by it.
    status, cookie, _ = login(port, "T0311", PASSWORD, source="127.0.0.2")
    assert status == 303 and cookie.startswith("cg_session=")


def test_guesses_from_one_address_across_staff_numbers_lock_that_address_only(gateway, checks):
    port = gateway.branch_console.port
    for staff in ("S1024", "S2048", "T0311", "S9999", "nobody"):  # known and unknown numbers count alike
        assert login(port, staff, "guess", source="127.0.0.3")[0] == 401
    assert login(port, "S2048", PASSWORD, source="127.0.0.3")[0] == 429
    assert len(checks) == 5
    status, cookie, _ = login(port, "S2048", PASSWORD, source="127.0.0.4")
    assert status == 303 and "HttpOnly" in cookie


def test_a_staff_number_not_on_the_roster_is_refused_like_a_wrong_password(gateway, checks):
    port = gateway.branch_console.port
    unknown = login(port, "S7777", PASSWORD)
    wrong = login(port, "S1024", "not-the-password")
    assert unknown[:2] == wrong[:2] == (401, None)
    assert unknown[2] == wrong[2] and WRONG_OR_UNKNOWN in unknown[2]
    assert len(checks) == 2  # the unknown number cost a check too: its answer takes as long
    status, cookie, _ = login(port, "S1024", PASSWORD)
    assert status == 303 and cookie is not None


def test_a_success_clears_the_count_and_a_centre_name_list_is_its_roster():
    sessions = Sessions(PASSWORD_HASH, staff=ROSTER)
    for _ in range(FAILURES_ALLOWED - 1):
        assert sessions.login("S1024", "typo", "10.0.0.5") is None
    assert sessions.login("S1024", PASSWORD, "10.0.0.5").staff == "S1024"
    for _ in range(FAILURES_ALLOWED):
        assert sessions.login("S1024", "typo", "10.0.0.5") is None
    with pytest.raises(LockedOut):
        sessions.login("S1024", PASSWORD, "10.0.0.5")
    # The centre's analysts: one hash each, and their names are the roster.
    analysts = Sessions({"wang.li": PASSWORD_HASH})
    assert analysts.roster == {"wang.li"} and analysts.login("li.wang", PASSWORD, "10.0.0.6") is None


def test_the_console_listens_on_loopback_unless_told_otherwise(tmp_path, broker):
    assert Config().console.listen == "127.0.0.1"
    cfg = gateway_config(tmp_path, broker_port=broker.port, serial_path=None)
    gw = Gateway(cfg.with_changes("console", enabled=True, port=0, password_hash=PASSWORD_HASH, staff=ROSTER),
                 pin_factory=MockFactory()).start()
    try:
        assert gw.branch_console._server.server_address[0] == "127.0.0.1"
        assert gw.branch_console.url.startswith("http://127.0.0.1:")
    finally:
        gw.stop()


@pytest.mark.parametrize("console, key", [
    ({"listen": "0.0.0.0"}, "console.listen"),
    ({"listen": ""}, "console.listen"),
    ({"staff": ()}, "console.staff"),
])
def test_a_console_built_in_code_is_held_to_the_same_rules(console, key):
    cfg = Config().with_changes("console", **({"enabled": True, "password_hash": PASSWORD_HASH,
                                               "staff": ROSTER} | console))
    with pytest.raises(ConfigError) as info:
        BranchConsole.from_config(cfg, None, None)
    assert info.value.key == key


def check_config(path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "counterguard", "check-config", str(path)],
                          capture_output=True, text=True, timeout=60)


def test_check_config_refuses_a_lan_console_without_tls_or_a_proxy(tmp_path):
    path = tmp_path / "gateway.toml"
    base = f'[console]\nenabled = true\npassword_hash = "{PASSWORD_HASH}"\nstaff = ["S1024"]\nlisten = "0.0.0.0"\n'
    path.write_text(base)
    done = check_config(path)
    assert done.returncode == 2
    assert f"{path}: console.listen:" in done.stderr and "console.behind_proxy" in done.stderr
    path.write_text(base + "behind_proxy = true\n")
    assert check_config(path).returncode == 0
    path.write_text(base + 'cert_file = "/etc/counterguard/console.pem"\n')
    done = check_config(path)
    assert done.returncode == 2 and f"{path}: console.cert_file: TLS needs cert_file and key_file" in done.stderr
    path.write_text(base.replace('staff = ["S1024"]\n', "") + "behind_proxy = true\n")
    done = check_config(path)
    assert done.returncode == 2 and f"{path}: console.staff: is required" in done.stderr
    path.write_text(base + f'cert_file = "{tmp_path}/console.pem"\nkey_file = "{tmp_path}/console.key"\n')
    done = check_config(path)
    assert done.returncode == 2 and f"{path}: console.cert_file: file {tmp_path}/console.pem does not exist" in done.stderr


def self_signed(tmp_path):
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "branch console")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "console.pem", tmp_path / "console.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def test_the_console_serves_https_with_its_certificate_and_a_secure_cookie(tmp_path, broker):
    cert_file, key_file = self_signed(tmp_path)
    gw = start_gateway(tmp_path, broker, cert_file=str(cert_file), key_file=str(key_file))
    try:
        console = gw.branch_console
        assert console.url.startswith("https://127.0.0.1:")
        trust = ssl.create_default_context(cafile=str(cert_file))
        status, cookie, _ = login(console.port, "S1024", PASSWORD, tls=trust)
        assert status == 303 and "Secure" in cookie and "HttpOnly" in cookie
        conn = http.client.HTTPSConnection("127.0.0.1", console.port, timeout=30, context=trust)
        conn.request("GET", "/api/state", headers={"Cookie": cookie.split(";")[0]})
        res = conn.getresponse()
        assert res.status == 200 and b'"staff": "S1024"' in res.read()
        conn.close()
        # Plain HTTP to the HTTPS port gets no page, and the console goes on serving.
        plain = http.client.HTTPConnection("127.0.0.1", console.port, timeout=30)
        with pytest.raises((http.client.HTTPException, OSError)):
            plain.request("GET", "/")
            plain.getresponse().read()
        plain.close()
        assert login(console.port, "T0311", PASSWORD, tls=trust)[0] == 303
    finally:
        gw.stop()


def test_a_certificate_that_does_not_load_is_named_at_start(tmp_path):
    cfg = Config().with_changes("console", enabled=True, password_hash=PASSWORD_HASH, staff=ROSTER,
                                cert_file=str(tmp_path / "missing.pem"), key_file=str(tmp_path / "missing.key"))
    with pytest.raises(ConfigError) as info:
        BranchConsole.from_config(cfg, None, None)
    assert info.value.key == "console.cert_file" and "missing.pem" in str(info.value)


def test_the_supervisor_commands_take_only_staff_numbers_on_the_roster(tmp_path):
    from counterguard.gateway.store.db import Store

    db = tmp_path / "gateway.db"
    Store(db).close()
    cfg_file = tmp_path / "gateway.toml"
    cfg_file.write_text(f'[store]\npath = "{db}"\n[console]\nstaff = ["S1024", "T0311"]\n')

    def counterguard(*args):
        return subprocess.run([sys.executable, "-m", "counterguard", *args, "--config", str(cfg_file)],
                              capture_output=True, text=True, timeout=60)

    for args in (("raise", "ev-1", "--by", "S9999"), ("ack", "--by", "s1024"),
                 ("outcome", "01HX9Z3K8Q4M2N7P5R6S8T0V1W", "false_alarm", "--by", "")):
        done = counterguard(*args)
        assert done.returncode == 2, done.stderr
        assert f"is not a staff number on this branch's roster (console.staff in {cfg_file})" in done.stderr
    # A number on the roster gets as far as the store, which has no such event.
    done = counterguard("raise", "ev-1", "--by", "T0311")
    assert done.returncode == 1 and "no event 'ev-1'" in done.stderr


def test_behind_a_proxy_on_this_machine_each_forwarded_client_is_counted_apart(tmp_path, broker):
    gw = start_gateway(tmp_path, broker, behind_proxy=True)
    try:
        port = gw.branch_console.port

        def via_proxy(staff, password, client):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            conn.request("POST", "/login", urllib.parse.urlencode({"staff": staff, "password": password}),
                         {"Content-Type": "application/x-www-form-urlencoded", "X-Forwarded-For": client})
            res = conn.getresponse()
            res.read()
            conn.close()
            return res.status, res.getheader("Set-Cookie")

        for staff in ("S9001", "S9002", "S9003", "S9004", "S9005"):
            assert via_proxy(staff, "guess", "10.20.0.7")[0] == 401
        assert via_proxy("S1024", PASSWORD, "10.20.0.7")[0] == 429
        status, cookie = via_proxy("S1024", PASSWORD, "10.20.0.8")  # another tablet through the same proxy
        assert status == 303 and "Secure" in cookie  # the browser reached the proxy over HTTPS
    finally:
        gw.stop()


def test_the_centre_dashboard_login_counts_parallel_guesses_the_same_way(tmp_path, checks):
    import re

    from counterguard.centre.store import open_store
    from counterguard.centre.web import Dashboard

    def dashboard_login(port, name, password):
        """The analyst's login: the form (with its token and cookie), then the post. A connection the
        busy server's short accept queue dropped is tried again, as a browser would."""
        for _ in range(10):
            try:
                return dashboard_login_once(port, name, password)
            except ConnectionResetError:
                continue
        raise AssertionError("the dashboard kept resetting connections")

    def dashboard_login_once(port, name, password):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("GET", "/login")
        res = conn.getresponse()
        page, cookie = res.read(), res.getheader("Set-Cookie").split(";")[0]
        token = re.search(rb'name="csrf" value="([^"]*)"', page).group(1).decode()
        conn.request("POST", "/login", urllib.parse.urlencode({"csrf": token, "analyst": name, "password": password}),
                     {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie})
        res = conn.getresponse()
        res.read()
        conn.close()
        return res.status

    users = {"wang.li": PASSWORD_HASH, "zhang.min": PASSWORD_HASH}
    with Dashboard(open_store(tmp_path / "centre.db"), host="127.0.0.1", port=0, users=users) as dashboard:
        start = threading.Barrier(40)
        statuses = []

        def guess(i):
            start.wait(30)
            statuses.append(dashboard_login(dashboard.port, "wang.li", f"guess-{i}"))

        threads = [threading.Thread(target=guess, args=(i,)) for i in range(40)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert len(checks) == FAILURES_ALLOWED
        assert sorted(statuses) == [401] * FAILURES_ALLOWED + [429] * (40 - FAILURES_ALLOWED)
        assert dashboard_login(dashboard.port, "wang.li", PASSWORD) == 429
        assert len(checks) == FAILURES_ALLOWED


def test_in_chromium_a_number_not_on_the_roster_reads_the_same_as_a_wrong_password(gateway, browser):  # noqa: F811
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def try_login(staff, password):
        browser.get(f"http://127.0.0.1:{gateway.branch_console.port}/")
        browser.find_element(By.ID, "staff").send_keys(staff)
        browser.find_element(By.ID, "password").send_keys(password)
        browser.find_element(By.ID, "login").click()

    shown = []
    for staff, password in (("S7777", PASSWORD), ("S1024", "not-the-password")):
        try_login(staff, password)
        # The page may redraw the message while it is read: a stale element is read again.
        shown.append(WebDriverWait(browser, 30, ignored_exceptions=(StaleElementReferenceException,)).until(
            lambda d: next((e.text for e in d.find_elements(By.ID, "login-error") if e.is_displayed() and e.text),
                           None)))
        assert browser.get_cookie("cg_session") is None
    assert shown[0] == shown[1] and "工号或密码错误" in shown[0]
    try_login("S1024", PASSWORD)
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.ID, "no-open"))
    assert browser.get_cookie("cg_session")["httpOnly"] is True
