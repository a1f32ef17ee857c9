"""Counter lamps and the supervisor's panel on gpiozero's own mock pins, read back from the pins."""

from __future__ import annotations

import io
import time

import pytest

from counterguard.gateway.counter.lamps import LampBoard, LampConsole, pin_factory_for
from counterguard.hardware.pinmap import default_pinmap_path, load_pinmap

PINMAP = load_pinmap(default_pinmap_path("zero2w"))  # has counter buzzers too


@pytest.fixture
def board(factory):
    presses = []
    b = LampBoard.from_pinmap(PINMAP, on_acknowledge=lambda: presses.append(time.monotonic()), pin_factory=factory)
    b.presses = presses
    yield b
    b.close()


def lit(factory, counter):
    pins = PINMAP.counters[counter]
    return {level for level in ("green", "amber", "red") if factory.pin(getattr(pins, level)).state}


@pytest.mark.parametrize("level", ["green", "amber", "red"])
def test_a_verdict_lights_exactly_its_lamp(board, factory, level):
    board.show_verdict(1, level)
    assert lit(factory, 1) == {level}
    assert lit(factory, 2) == set()


def test_amber_gives_way_to_the_next_verdict(board, factory):
    board.show_verdict(1, "amber")
    board.show_verdict(1, "green")
    assert lit(factory, 1) == {"green"}


def test_red_stays_lit_through_later_verdicts_until_acknowledged(board, factory):
    board.show_verdict(2, "red")
    for level in ("green", "amber", "green"):
        board.show_verdict(2, level)
        assert lit(factory, 2) == {"red"}
    assert factory.pin(PINMAP.supervisor.red).state
    board.acknowledged(2, open_reds_left=0)
    assert lit(factory, 2) == set()
    assert not factory.pin(PINMAP.supervisor.red).state
    board.show_verdict(2, "green")
    assert lit(factory, 2) == {"green"}


def test_the_supervisor_lamp_stays_on_while_another_red_waits(board, factory):
    board.show_verdict(1, "red")
    board.show_verdict(2, "red")
    board.acknowledged(1, open_reds_left=1)
    assert lit(factory, 1) == set() and lit(factory, 2) == {"red"}
    assert factory.pin(PINMAP.supervisor.red).state
    board.acknowledged(2, open_reds_left=0)
    assert not factory.pin(PINMAP.supervisor.red).state


def test_red_sounds_the_counter_and_panel_buzzers(board, factory):
    counter_buzzer = factory.pin(PINMAP.counters[1].buzzer)
    panel_buzzer = factory.pin(PINMAP.supervisor.buzzer)
    board.show_verdict(1, "red")
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and not (any(s for _, s in counter_buzzer.states[1:])
                                               and any(s for _, s in panel_buzzer.states[1:])):
        time.sleep(0.02)
    assert any(state for _, state in counter_buzzer.states[1:]), "counter buzzer never sounded"
    assert any(state for _, state in panel_buzzer.states[1:]), "panel buzzer never sounded"


def test_a_burst_of_reds_is_one_beep_series_and_an_acknowledged_panel_beeps_again(board, factory):
    from counterguard.gateway.counter.lamps import BEEP_OFF_S, BEEP_ON_S, PANEL_BEEPS

    panel_buzzer = factory.pin(PINMAP.supervisor.buzzer)

    def beeps() -> int:  # rising edges on the panel buzzer's pin
        states = [s for _, s in panel_buzzer.states]
        return sum(1 for a, b in zip(states, states[1:]) if b and not a)

    for counter in (1, 2, 3, 4, 1):  # a mule ring at every counter within a second and a half
        board.show_verdict(counter, "red")
        time.sleep(0.3)  # each lands inside the series, in an off or an on beat
    series = PANEL_BEEPS * (BEEP_ON_S + BEEP_OFF_S)
    time.sleep(series + 0.5)
    assert beeps() == PANEL_BEEPS, "each red restarted the panel's beeping"
    assert board.panel.waiting == 5
    board.acknowledged(1, open_reds_left=4)
    board.show_verdict(2, "red")  # a new red after the series ended: heard again
    time.sleep(series + 0.5)
    assert beeps() == 2 * PANEL_BEEPS


def test_green_and_amber_are_silent(board, factory):
    board.show_verdict(1, "amber")
    board.show_verdict(2, "green")
    time.sleep(0.1)
    for pin in (PINMAP.counters[1].buzzer, PINMAP.counters[2].buzzer, PINMAP.supervisor.buzzer):
        assert not any(state for _, state in factory.pin(pin).states)


def test_pressing_acknowledge_calls_back_once_per_press(board, factory):
    button = factory.pin(PINMAP.supervisor.acknowledge)
    assert button.state is True  # pulled up: not pressed
    button.drive_low()
    button.drive_high()
    time.sleep(0.1)  # past the debounce
    button.drive_low()
    button.drive_high()
    assert len(board.presses) == 2


def test_restore_relights_waiting_reds_after_a_restart_without_sounding(board, factory):
    board.restore([2, 2])
    assert lit(factory, 2) == {"red"} and factory.pin(PINMAP.supervisor.red).state
    assert not any(state for _, state in factory.pin(PINMAP.supervisor.buzzer).states)
    board.show_verdict(2, "green")
    assert lit(factory, 2) == {"red"}


def test_a_counter_without_lamps_is_logged_once_and_harms_nothing(board, factory, caplog):
    for _ in range(3):
        board.show_verdict(9, "amber")
    assert sum("counter 9 has no lamps" in r.getMessage() for r in caplog.records) == 1
    board.show_verdict(9, "red")
    assert factory.pin(PINMAP.supervisor.red).state  # the supervisor still hears of it


def test_the_console_prints_a_line_per_change(board):
    out = io.StringIO()
    LampConsole(board, out)
    board.show_verdict(1, "green")
    board.show_verdict(1, "green")  # no change, no line
    board.show_verdict(2, "red")
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("lamps  c1 [G . .]  c2 [. . .]")
    assert "c2 [. . R]" in lines[-1] and "supervisor [R" in lines[-1]
    assert len([l for l in lines if "c1 [G . .]  c2 [. . .]" in l]) == 1


def test_closing_twice_is_harmless(factory):
    b = LampBoard.from_pinmap(PINMAP, pin_factory=factory)
    b.close()
    b.close()


def test_pin_modes():
    assert type(pin_factory_for("mock")).__name__ == "MockFactory"
    with pytest.raises(ValueError, match="auto, mock or real"):
        pin_factory_for("gpio")
