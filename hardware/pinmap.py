"""Pin maps: which BCM pin drives which counter lamp, the supervisor's panel and the buzzers.

A pin map is data in hardware/pinmaps/*.toml, the single source that the wiring diagram and the
gateway both read. It is validated on load; every error names the file, the key and the pin.

    [board]
    name = "pi4-4counter"
    model = "Raspberry Pi 4 Model B"

    [supervisor]
    red = 12            # panel lamp: some counter has an unacknowledged red alert
    buzzer = 18
    acknowledge = 16    # push button to ground (internal pull-up)

    [[counter]]
    number = 1
    green = 17
    amber = 27
    red = 22
    # buzzer = 4        # optional counter-side buzzer
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

#: BCM pins a pin map may not take: ID EEPROM (0, 1), I2C (2, 3) and the UART (14, 15) that
#: carries counter lines on boards without USB serial adapters.
RESERVED = {0: "ID EEPROM (ID_SD)", 1: "ID EEPROM (ID_SC)", 2: "I2C SDA", 3: "I2C SCL",
            14: "UART TXD", 15: "UART RXD"}
LOWEST, HIGHEST = 0, 27
MAX_COUNTER = 64
LAMPS = ("green", "amber", "red")


class PinMapError(ValueError):
    """A pin map file is unreadable or wrong; the message names the file, the key and the pin."""

    def __init__(self, path, key: str | None, message: str):
        self.path, self.key = path, key
        where = f"{path}: {key}: " if key else f"{path}: "
        super().__init__(where + message)


@dataclass(frozen=True)
class CounterPins:
    number: int
    green: int
    amber: int
    red: int
    buzzer: int | None = None

    def pins(self) -> dict[str, int]:
        out = {"green": self.green, "amber": self.amber, "red": self.red}
        if self.buzzer is not None:
            out["buzzer"] = self.buzzer
        return out


@dataclass(frozen=True)
class SupervisorPins:
    red: int
    buzzer: int
    acknowledge: int

    def pins(self) -> dict[str, int]:
        return {"red": self.red, "buzzer": self.buzzer, "acknowledge": self.acknowledge}


@dataclass(frozen=True)
class PinMap:
    name: str
    model: str
    supervisor: SupervisorPins
    counters: dict  # counter number -> CounterPins
    source: Path | None = None

    def uses(self) -> dict[int, str]:
        """Every pin in the map and what it drives, e.g. {22: "counter 1 red"}."""
        out = {pin: f"supervisor {role}" for role, pin in self.supervisor.pins().items()}
        for c in self.counters.values():
            out.update({pin: f"counter {c.number} {role}" for role, pin in c.pins().items()})
        return out


def pinmap_dir() -> Path:
    return Path(__file__).resolve().parent / "pinmaps"


def default_pinmap_path(model: str = "pi4") -> Path:
    """The shipped four-counter map for ``pi4``/``pi5``, the two-counter map for ``zero2w``."""
    names = {"pi4": "pi4-4counter", "pi5": "pi5-4counter", "zero2w": "zero2w-2counter"}
    if model not in names:
        raise ValueError(f"no shipped pin map for board {model!r}; choose one of {', '.join(names)}")
    return pinmap_dir() / f"{names[model]}.toml"


def load_pinmap(path) -> PinMap:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PinMapError(path, None, "no such pin map file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PinMapError(path, None, f"cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise PinMapError(path, None, f"not valid TOML: {exc}") from None
    return parse_pinmap(data, path)


def parse_pinmap(data: dict, path="<pin map>") -> PinMap:
    taken: dict[int, str] = {}

    def pin(table: dict, section: str, role: str, *, required: bool = True) -> int | None:
        key = f"{section}.{role}"
        if role not in table:
            if required:
                raise PinMapError(path, key, "missing; every counter needs green, amber and red"
                                  if section.startswith("counter") else "missing")
            return None
        value = table[role]
        if isinstance(value, bool) or not isinstance(value, int):
            raise PinMapError(path, key, f"{value!r} is not a BCM pin number")
        if not LOWEST <= value <= HIGHEST:
            raise PinMapError(path, key, f"pin {value} is outside BCM {LOWEST}-{HIGHEST}")
        if value in RESERVED:
            raise PinMapError(path, key, f"pin {value} is reserved for {RESERVED[value]}")
        if value in taken:
            raise PinMapError(path, key, f"pin {value} is already used by {taken[value]}")
        taken[value] = key
        return value

    def unknown(table: dict, section: str, allowed: set) -> None:
        extra = sorted(set(table) - allowed)
        if extra:
            raise PinMapError(path, f"{section}.{extra[0]}", f"unknown key; expected one of {', '.join(sorted(allowed))}")

    unknown(data, "(top level)", {"board", "supervisor", "counter"})
    board = data.get("board", {})
    if not isinstance(board, dict):
        raise PinMapError(path, "board", "must be a table")
    unknown(board, "board", {"name", "model", "notes"})
    sup = data.get("supervisor")
    if not isinstance(sup, dict):
        raise PinMapError(path, "supervisor", "missing [supervisor] table (red, buzzer, acknowledge)")
    unknown(sup, "supervisor", {"red", "buzzer", "acknowledge"})
    supervisor = SupervisorPins(pin(sup, "supervisor", "red"), pin(sup, "supervisor", "buzzer"),
                                pin(sup, "supervisor", "acknowledge"))
    raw = data.get("counter")
    if not isinstance(raw, list) or not raw:
        raise PinMapError(path, "counter", "missing; add one [[counter]] table per directly wired counter")
    counters: dict[int, CounterPins] = {}
    for i, table in enumerate(raw):
        if not isinstance(table, dict):
            raise PinMapError(path, f"counter[{i}]", "must be a table")
        number = table.get("number")
        section = f"counter[{i}]"
        if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= MAX_COUNTER:
            raise PinMapError(path, f"{section}.number", f"{number!r} is not a counter number 1-{MAX_COUNTER}")
        if number in counters:
            raise PinMapError(path, f"{section}.number", f"counter {number} appears twice")
        section = f"counter {number}"
        unknown(table, section, {"number", *LAMPS, "buzzer"})
        counters[number] = CounterPins(number, *(pin(table, section, lamp) for lamp in LAMPS),
                                       buzzer=pin(table, section, "buzzer", required=False))
    return PinMap(name=str(board.get("name") or Path(str(path)).stem), model=str(board.get("model", "")),
                  supervisor=supervisor, counters=dict(sorted(counters.items())),
                  source=Path(path) if isinstance(path, (str, Path)) else None)
