"""The bill of materials (hardware/bom.csv): parts, quantity per branch size, rough cost in CNY.

Each branch size is built on one shipped pin map, and ``check_bom`` holds the quantities to it:
enough tower lights, buzzers, panel parts and driver channels for every pin of the map, and one
counter node, transceiver, indicator and adapter per counter line. The ``covers`` column says what
a part provides: ``counter.red`` (a pin-map role), ``board:<model>``, ``driver`` or ``line:<what>``.

    >>> parts = load_bom()
    >>> check_bom(parts)
    []
    >>> round(cost(parts, "medium")) > 0
    True
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
BOM = HERE / "bom.csv"
COLUMNS = ("part", "covers", "description", "small", "medium", "large", "unit_cny", "notes")
# size -> (the pin map it is wired with, counter lines); counters beyond the map's have no tower light
SIZES = {"small": ("zero2w-2counter", 2), "medium": ("pi4-4counter", 4), "large": ("pi5-4counter", 8)}
DRIVER_CHANNELS = 8  # per driver board
LINE_PARTS = ("line:counter node", "line:transceiver", "line:indicator", "line:adapter")


class BomError(ValueError):
    """bom.csv is malformed; the message names the file, the line and the column."""


@dataclass(frozen=True)
class Part:
    part: str
    covers: tuple
    description: str
    quantity: dict  # size -> how many
    unit_cny: float
    notes: str = ""


def load_bom(path=BOM) -> list[Part]:
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if tuple(header or ()) != COLUMNS:
            raise BomError(f"{path}: line 1: columns must be {','.join(COLUMNS)}, got {','.join(header or [])}")
        parts, seen = [], set()
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(COLUMNS):
                raise BomError(f"{path}: line {line}: {len(row)} fields, expected {len(COLUMNS)} "
                               "(quote a field that contains a comma)")
            values = dict(zip(COLUMNS, row))
            if not values["part"] or values["part"] in seen:
                raise BomError(f"{path}: line {line}: part: {values['part']!r} is empty or listed twice")
            seen.add(values["part"])
            quantity = {}
            for size in SIZES:
                try:
                    quantity[size] = int(values[size])
                except ValueError:
                    raise BomError(f"{path}: line {line}: {size}: {values[size]!r} is not a whole number") from None
                if quantity[size] < 0:
                    raise BomError(f"{path}: line {line}: {size}: must not be negative")
            try:
                unit = float(values["unit_cny"])
            except ValueError:
                raise BomError(f"{path}: line {line}: unit_cny: {values['unit_cny']!r} is not a price") from None
            covers = tuple(c.strip() for c in values["covers"].split(";") if c.strip())
            parts.append(Part(values["part"], covers, values["description"], quantity, unit, values["notes"]))
    return parts


def cost(parts: list[Part], size: str) -> float:
    return sum(p.quantity[size] * p.unit_cny for p in parts)


def supplied(parts: list[Part], size: str, what: str) -> int:
    return sum(p.quantity[size] for p in parts if what in p.covers)


def needs(pinmap, counters: int) -> dict[str, int]:
    """What a branch wired with ``pinmap`` and ``counters`` counter lines needs, by ``covers`` name."""
    need: dict[str, int] = {f"board:{pinmap.model}": 1}
    for c in pinmap.counters.values():
        for role in c.pins():
            need[f"counter.{role}"] = need.get(f"counter.{role}", 0) + 1
    for role in pinmap.supervisor.pins():
        need[f"supervisor.{role}"] = 1
    outputs = len(pinmap.uses()) - 1  # every pin but the acknowledge button goes through a channel
    need["driver"] = -(-outputs // DRIVER_CHANNELS)
    for what in LINE_PARTS:
        need[what] = counters
    return need


def check_bom(parts: list[Part]) -> list[str]:
    """Every shortfall against the pin maps, e.g. ``medium: counter.red needs 4, the BOM has 3``."""
    from counterguard.hardware.pinmap import load_pinmap

    problems = []
    for size, (map_name, counters) in SIZES.items():
        pinmap = load_pinmap(HERE / "pinmaps" / f"{map_name}.toml")
        for what, count in needs(pinmap, counters).items():
            have = supplied(parts, size, what)
            if have < count:
                problems.append(f"{size}: {what} needs {count}, the BOM has {have}")
    return problems
