"""Pin maps: the shipped maps load, and every kind of mistake is refused naming the file, key and pin."""

from __future__ import annotations

import pytest

from counterguard.hardware.pinmap import RESERVED, PinMapError, default_pinmap_path, load_pinmap, pinmap_dir

GOOD = """
[board]
name = "test"
model = "Raspberry Pi 4 Model B"

[supervisor]
red = 12
buzzer = 18
acknowledge = 16

[[counter]]
number = 1
green = 17
amber = 27
red = 22

[[counter]]
number = 2
green = 5
amber = 6
red = 13
buzzer = 4
"""


@pytest.mark.parametrize("path", sorted(pinmap_dir().glob("*.toml")), ids=lambda p: p.stem)
def test_every_shipped_pin_map_loads_with_three_lamps_per_counter(path):
    pinmap = load_pinmap(path)
    assert pinmap.counters and pinmap.name == path.stem
    for counter in pinmap.counters.values():
        assert None not in (counter.green, counter.amber, counter.red)
    pins = list(pinmap.uses())
    assert not set(pins) & set(RESERVED)


@pytest.mark.parametrize("model, counters", [("pi4", 4), ("pi5", 4), ("zero2w", 2)])
def test_each_supported_board_has_a_default_map(model, counters):
    assert len(load_pinmap(default_pinmap_path(model)).counters) == counters


def test_a_good_map_reads_back_what_it_says(tmp_path):
    path = tmp_path / "good.toml"
    path.write_text(GOOD)
    pinmap = load_pinmap(path)
    assert pinmap.supervisor.acknowledge == 16
    assert pinmap.counters[2].buzzer == 4 and pinmap.counters[1].buzzer is None
    assert pinmap.uses()[22] == "counter 1 red"


@pytest.mark.parametrize("change, key, words", [
    (("amber = 27", "amber = 17"), "counter 1.amber", "pin 17 is already used by counter 1.green"),
    (("red = 13", "red = 12"), "counter 2.red", "already used by supervisor.red"),
    (("green = 5", "green = 14"), "counter 2.green", "reserved for UART TXD"),
    (("green = 5", "green = 2"), "counter 2.green", "reserved for I2C SDA"),
    (("green = 5", "green = 40"), "counter 2.green", "outside BCM 0-27"),
    (("green = 5", 'green = "five"'), "counter 2.green", "not a BCM pin number"),
    (("amber = 6\n", ""), "counter 2.amber", "every counter needs green, amber and red"),
    (("number = 2", "number = 1"), "counter[1].number", "counter 1 appears twice"),
    (("number = 2", "number = 65"), "counter[1].number", "not a counter number 1-64"),
    (("acknowledge = 16", "ack = 16"), "supervisor.ack", "unknown key"),
    (("buzzer = 4", "buzer = 4"), "counter 2.buzer", "unknown key"),
    (("green = 5", "green = true"), "counter 2.green", "not a BCM pin number"),
    (("green = 5", "green = -1"), "counter 2.green", "outside BCM 0-27"),
    (("green = 5", "green = 0"), "counter 2.green", "reserved for ID EEPROM (ID_SD)"),
    (("green = 5", "green = 3"), "counter 2.green", "reserved for I2C SCL"),
    (("green = 5", "green = 15"), "counter 2.green", "reserved for UART RXD"),
    (("buzzer = 18", "buzzer = 17"), "counter 1.green", "pin 17 is already used by supervisor.buzzer"),
    (("buzzer = 4", "buzzer = 27"), "counter 2.buzzer", "already used by counter 1.amber"),
    (("acknowledge = 16\n", ""), "supervisor.acknowledge", "missing"),
    (("[board]", "[bord]"), "(top level).bord", "unknown key"),
    (('model = "Raspberry Pi 4 Model B"', 'modle = "x"'), "board.modle", "unknown key"),
    (("number = 2", "number = true"), "counter[1].number", "not a counter number 1-64"),
    (("number = 2", "number = 0"), "counter[1].number", "not a counter number 1-64"),
])
def test_a_bad_map_is_refused_naming_file_key_and_pin(tmp_path, change, key, words):
    path = tmp_path / "branch.toml"
    old, new = change
    assert old in GOOD
    path.write_text(GOOD.replace(old, new, 1) if old != "amber = 6\n" else GOOD.replace("amber = 6\n", ""))
    with pytest.raises(PinMapError) as caught:
        load_pinmap(path)
    message = str(caught.value)
    assert str(path) in message and key in message and words in message


@pytest.mark.parametrize("text, words", [
    ("[board]\nname = 'x'\n", "missing [supervisor]"),
    ("[supervisor]\nred = 12\nbuzzer = 18\nacknowledge = 16\n", "add one [[counter]] table"),
    ("[supervisor\n", "not valid TOML"),
    ("board = 3\n[supervisor]\nred = 12\nbuzzer = 18\nacknowledge = 16\n", "board: must be a table"),
    ("counter = []\n[supervisor]\nred = 12\nbuzzer = 18\nacknowledge = 16\n", "add one [[counter]] table"),
    ("counter = [1]\n[supervisor]\nred = 12\nbuzzer = 18\nacknowledge = 16\n", "counter[0]: must be a table"),
    ("supervisor = 12\n", "missing [supervisor] table"),
])
def test_a_map_missing_a_section_says_which(tmp_path, text, words):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(PinMapError) as caught:
        load_pinmap(path)
    assert words in str(caught.value)


def test_a_file_that_is_not_text_is_a_pin_map_error_naming_it(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(b"# Z\xfcrich\n")
    with pytest.raises(PinMapError, match="cannot read") as caught:
        load_pinmap(path)
    assert str(path) in str(caught.value)


def test_a_missing_file_is_a_pin_map_error_naming_it(tmp_path):
    with pytest.raises(PinMapError, match="no such pin map file") as caught:
        load_pinmap(tmp_path / "nope.toml")
    assert isinstance(caught.value, ValueError)
