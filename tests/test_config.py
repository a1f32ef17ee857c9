"""Configuration: defaults that run, and errors that name the file and the key."""

from pathlib import Path

import pytest

from counterguard.gateway.config import SECTIONS, Config, ConfigError, load_config

GOOD = """
[gateway]
id = "gw-xa-0001"
region = "sn-xa"
branch = "xa-yanta-017"
data_dir = "/tmp/cg"

[[serial]]
path = "/dev/serial/by-id/usb-counterguard_node_1-if00"
name = "counter 1"

[[serial]]
path = "/dev/ttyAMA0"
baudrate = 57600

[thresholds]
amber = 0.4
red = 0.8

[mqtt]
host = "centre.example"
port = 8883
heartbeat_s = 15
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return path


def test_good_file(tmp_path):
    cfg = load_config(write(tmp_path, GOOD))
    assert cfg.gateway.id == "gw-xa-0001"
    assert [p.path for p in cfg.serial] == ["/dev/serial/by-id/usb-counterguard_node_1-if00", "/dev/ttyAMA0"]
    assert cfg.serial[1].baudrate == 57600 and cfg.serial[0].baudrate == 115200
    assert cfg.mqtt.heartbeat_s == 15.0 and cfg.mqtt.port == 8883
    assert cfg.store_path == Path("/tmp/cg/counterguard.db")


def test_defaults_need_no_file():
    cfg = Config()
    assert cfg.serial == () and cfg.lamps.pins == "auto" and cfg.store.synchronous == "FULL"
    assert cfg.console.listen == "127.0.0.1"  # the console is for this machine until a branch says otherwise


def test_the_console_roster_is_read_as_staff_numbers(tmp_path):
    cfg = load_config(write(tmp_path, '[console]\nstaff = ["S1024", "T0311"]\n'))
    assert cfg.console.staff == ("S1024", "T0311")


@pytest.mark.parametrize("text, key, words", [
    ("[mqtt]\nport = 70000\n", "mqtt.port", "at most 65535"),
    ("[link]\nheartbeat_s = nan\n", "link.heartbeat_s", "finite number"),
    ("[thresholds]\nred = inf\n", "thresholds.red", "finite number"),
    ("[mqtt]\nport = \"1883\"\n", "mqtt.port", "must be int"),
    ("[mqtt]\nhots = \"x\"\n", "mqtt.hots", "unknown key"),
    ("[lamp]\npins = \"mock\"\n", "lamp", "unknown section"),
    ("[lamps]\npins = \"gpio\"\n", "lamps.pins", "one of auto, mock, real"),
    ("[[serial]]\nbaudrate = 9600\n", "serial[0].path", "is required"),
    ("[[serial]]\npath = \"/dev/ttyS0\"\nspeed = 9600\n", "serial[0].speed", "unknown key"),
    ("[thresholds]\namber = 0.9\nred = 0.5\n", "thresholds", "amber < red"),
    ("[store]\nsynchronous = \"OFF\"\n", "store.synchronous", "FULL, NORMAL"),
    ("[link]\nheartbeat_s = true\n", "link.heartbeat_s", "must be float"),
    ("[gateway]\nbranch = \"xa/017\"\n", "gateway.branch", "MQTT topics"),
    ("[mqtt]\nca_file = \"/etc/ca.pem\"\n", "mqtt.ca_file", "together"),
    ("[console]\nstaff = \"S1024\"\n", "console.staff", "list of strings"),
    ("[console]\nstaff = [\"S1024\", \"S 2048\"]\n", "console.staff[1]", "not a staff number"),
    ("[console]\nkey_file = \"/etc/counterguard/console.key\"\n", "console.cert_file", "together"),
])
def test_error_names_file_and_key(tmp_path, text, key, words):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message and key in message and words in message
    assert info.value.key == key


def test_bad_toml_names_the_file_and_line(tmp_path):
    path = write(tmp_path, "[mqtt]\nport = \n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value) and "line 2" in str(info.value)


def test_missing_file_says_so(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "nope.toml")


def test_every_setting_is_documented():
    doc = (Path(__file__).resolve().parent.parent / "docs" / "configuration.md").read_text()
    for section, cls in SECTIONS.items():
        for name in cls.__dataclass_fields__:
            assert f"`{section}.{name}`" in doc, f"{section}.{name} missing from docs/configuration.md"


def test_a_clusters_nodes_are_listed_in_mqtt_host(tmp_path):
    from counterguard.gateway.config import parse_config

    cfg = parse_config({"mqtt": {"host": "mq1.centre.example, mq2.centre.example:8884", "port": 8883}})
    assert cfg.mqtt.host == "mq1.centre.example, mq2.centre.example:8884"
    with pytest.raises(ConfigError, match=r"mqtt\.host.*'mq2:99999' is not host or host:port"):
        parse_config({"mqtt": {"host": "mq1, mq2:99999"}}, tmp_path / "gw.toml")
    with pytest.raises(ConfigError, match=r"mqtt\.host"):
        parse_config({"mqtt": {"host": "mq1,,mq2"}}, tmp_path / "gw.toml")
