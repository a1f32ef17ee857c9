"""hardware/ as the single source: the wiring diagrams show every pin of their pin map and cannot
drift from it, and the bill of materials covers every device the pin maps drive, per branch size."""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from counterguard.hardware.pinmap import load_pinmap, pinmap_dir
from counterguard.hardware import wiring
from counterguard.hardware.bom import BOM, SIZES, BomError, Part, check_bom, cost, load_bom

ROOT = Path(__file__).resolve().parent.parent
SVG = "{http://www.w3.org/2000/svg}"
MAPS = sorted(pinmap_dir().glob("*.toml"))


def texts(element) -> list[str]:
    return [t.text or "" for t in element.iter(f"{SVG}text")]


def wires(svg_text: str) -> dict[int, ET.Element]:
    root = ET.fromstring(svg_text)
    return {int(g.get("data-bcm")): g for g in root.iter(f"{SVG}g") if g.get("class") == "wire"}


@pytest.mark.parametrize("path", MAPS, ids=lambda p: p.stem)
def test_the_diagram_shows_every_pin_of_its_map_with_its_gpio_number_and_what_it_drives(path):
    pinmap = load_pinmap(path)
    svg = wiring.diagram_path(path).read_text(encoding="utf-8")
    drawn = wires(svg)
    assert set(drawn) == set(pinmap.uses()), "the diagram and the pin map name different pins"
    for bcm, role in pinmap.uses().items():
        labels = texts(drawn[bcm])
        assert f"GPIO{bcm}" in labels, f"GPIO{bcm} is not labelled"
        assert role in labels, f"GPIO{bcm} does not say it drives {role}"
    root = ET.fromstring(svg)
    marked = {int(c.get("data-bcm")) for c in root.iter(f"{SVG}circle") if c.get("data-bcm")}
    assert marked == set(pinmap.uses()), "the header picture marks different pins"


@pytest.mark.parametrize("path", MAPS, ids=lambda p: p.stem)
def test_the_committed_diagram_is_exactly_what_its_pin_map_draws_now(path):
    target = wiring.diagram_path(path)
    assert target.exists(), f"{target.name} is missing; run `counterguard wiring`"
    assert target.read_text(encoding="utf-8") == wiring.render_svg(load_pinmap(path)), (
        f"{target.name} is out of date with {path.name}; run `counterguard wiring` and commit it")


@pytest.mark.parametrize("bcm, header_pin", [(17, 11), (27, 13), (22, 15), (16, 36), (12, 32), (18, 12), (4, 7)])
def test_header_pins_are_the_physical_positions_an_installer_counts(bcm, header_pin):
    drawn = wires(wiring.render_svg(load_pinmap(pinmap_dir() / "zero2w-2counter.toml")))
    assert drawn[bcm].get("data-header-pin") == str(header_pin)
    assert f"pin {header_pin}" in texts(drawn[bcm])


def test_the_button_goes_to_a_ground_pin_and_lamps_through_driver_channels():
    pinmap = load_pinmap(pinmap_dir() / "pi4-4counter.toml")
    drawn = wires(wiring.render_svg(pinmap))
    button = " ".join(texts(drawn[pinmap.supervisor.acknowledge]))
    assert "other leg to GND (pin 34)" in button and "IN" not in button
    channels = sorted(int(m) for bcm, g in drawn.items() for t in texts(g) for m in re.findall(r"IN(\d+)", t))
    assert channels == list(range(1, len(pinmap.uses())))  # one channel per lamp and buzzer


def test_a_branch_map_gets_its_own_diagram_and_a_moved_pin_moves_in_it(tmp_path):
    branch = tmp_path / "branch.toml"
    branch.write_text((pinmap_dir() / "pi4-4counter.toml").read_text().replace("red = 25", "red = 20"))
    out = tmp_path / "branch.svg"
    result = subprocess.run([sys.executable, "-m", "counterguard", "wiring", "--pinmap", str(branch), "-o", str(out)],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    drawn = wires(out.read_text())
    assert 20 in drawn and 25 not in drawn
    assert "counter 4 red" in texts(drawn[20])


def test_wiring_check_passes_on_the_shipped_diagrams_and_a_bad_map_is_refused_naming_it(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "counterguard", "wiring", "--check"], cwd=ROOT,
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text((pinmap_dir() / "pi4-4counter.toml").read_text().replace("red = 25", "red = 15"))
    refused = subprocess.run([sys.executable, "-m", "counterguard", "wiring", "--pinmap", str(bad)], cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2
    assert str(bad) in refused.stderr and "counter 4.red" in refused.stderr and "UART RXD" in refused.stderr


# -- bill of materials -------------------------------------------------------------------------------
def test_the_bom_parses_with_a_quantity_for_every_branch_size():
    parts = load_bom()
    assert len(parts) >= 10
    for part in parts:
        assert set(part.quantity) == set(SIZES) and part.unit_cny > 0 and part.description
        assert any(part.quantity.values()), f"{part.part} is in no branch"


@pytest.mark.parametrize("path", MAPS, ids=lambda p: p.stem)
def test_the_bom_covers_every_device_kind_and_the_board_of_each_pin_map(path):
    pinmap = load_pinmap(path)
    covered = {c for part in load_bom() if any(part.quantity.values()) for c in part.covers}
    kinds = {f"counter.{role}" for c in pinmap.counters.values() for role in c.pins()}
    kinds |= {f"supervisor.{role}" for role in pinmap.supervisor.pins()}
    assert kinds - covered == set(), f"no part in bom.csv for {sorted(kinds - covered)}"
    assert f"board:{pinmap.model}" in covered


def test_each_branch_size_has_enough_of_everything_its_pin_map_and_counter_lines_need():
    assert check_bom(load_bom()) == []


def test_a_short_bom_is_caught_naming_the_size_and_the_part():
    parts = [Part(p.part, p.covers, p.description, {**p.quantity, "medium": p.quantity["medium"] - 1}, p.unit_cny)
             if "counter.red" in p.covers or "line:adapter" in p.covers else p for p in load_bom()]
    problems = check_bom(parts)
    assert "medium: counter.red needs 4, the BOM has 3" in problems
    assert "medium: line:adapter needs 4, the BOM has 3" in problems


@pytest.mark.parametrize("line, words", [
    ("psu,,5 V supply,1,one,1,50,", "line 3: medium: 'one' is not a whole number"),
    ("psu,,5 V supply,1,1,1,cheap,", "line 3: unit_cny: 'cheap' is not a price"),
    ("psu,,5 V supply, with comma,1,1,1,50,", "line 3: 9 fields, expected 8"),
    ("psu,,5 V supply,1,-1,1,50,", "line 3: medium: must not be negative"),
    ("sd-card,,again,1,1,1,50,", "line 3: part: 'sd-card' is empty or listed twice"),
])
def test_a_malformed_bom_line_is_refused_naming_file_line_and_column(tmp_path, line, words):
    path = tmp_path / "bom.csv"
    lines = BOM.read_text().splitlines()
    sd = next(l for l in lines if l.startswith("sd-card,"))
    path.write_text("\n".join([lines[0], sd, line]) + "\n")
    with pytest.raises(BomError) as caught:
        load_bom(path)
    assert str(path) in str(caught.value) and words in str(caught.value)


def test_the_installer_guide_quotes_the_costs_the_bom_adds_up_to():
    guide = (ROOT / "hardware" / "README.md").read_text()
    row = next(l for l in guide.splitlines() if l.startswith("| rough cost (CNY)"))
    quoted = [int(cell.strip().replace(",", "")) for cell in row.strip("|").split("|")[1:]]
    parts = load_bom()
    assert quoted == [round(cost(parts, size)) for size in SIZES]
    for path in MAPS:
        assert wiring.diagram_path(path).name in guide, f"the guide does not show {wiring.diagram_path(path).name}"
