"""Wiring diagrams drawn from a pin map, so the diagram the installer follows cannot drift from the pins
the gateway drives.

One row per pin: the Raspberry Pi header pin and its GPIO number, the driver-board channel it
switches (lamps and buzzers; the acknowledge button goes straight to the Pi), and the device at the
far end. A picture of the 40-pin header beside it marks where each used pin is. Header layouts come
from gpiozero's board data, not from a table of our own.

    counterguard wiring                          # regenerate hardware/wiring-<map>.svg for every shipped map
    counterguard wiring --pinmap branch.toml -o branch.svg
"""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

HERE = Path(__file__).resolve().parent

# gpiozero board revisions whose header data we draw; every supported board has the same 40-pin J8.
REVISIONS = {"Raspberry Pi 4 Model B": "c03111", "Raspberry Pi 5": "d04170", "Raspberry Pi Zero 2 W": "902120"}
DEFAULT_REVISION = "c03111"

COLOURS = {"green": "#2e7d32", "amber": "#f9a825", "red": "#c62828", "buzzer": "#6a1b9a", "acknowledge": "#1565c0"}
ROW_H = 28
TOP = 130
X_PI, X_DRIVER, X_DEVICE, X_HEADER = 40, 400, 700, 1200
WIDTH = 1420


def header_pins(model: str) -> dict[int, str]:
    """Physical header pin number -> its name (``GPIO17``, ``GND``, ``3V3``...) for the board."""
    from gpiozero.pins.mock import MockFactory

    factory = MockFactory(revision=REVISIONS.get(model, DEFAULT_REVISION))
    try:
        return {number: info.name for number, info in factory.board_info.headers["J8"].pins.items()}
    finally:
        factory.close()


def rows_of(pinmap) -> list[dict]:
    """One row per pin, in the order an installer wires them: counter by counter, then the panel."""
    rows = []

    def add(group: str, role: str, pin: int, device: str, driven: bool):
        rows.append({"group": group, "role": role, "bcm": pin, "device": device, "driven": driven,
                     "label": f"{group} {role}"})

    for c in pinmap.counters.values():
        group = f"counter {c.number}"
        for level in ("green", "amber", "red"):
            add(group, level, getattr(c, level), f"{level} of the counter's tower light", True)
        if c.buzzer is not None:
            add(group, "buzzer", c.buzzer, "counter buzzer", True)
    s = pinmap.supervisor
    add("supervisor", "red", s.red, "panel red lamp", True)
    add("supervisor", "buzzer", s.buzzer, "panel buzzer", True)
    add("supervisor", "acknowledge", s.acknowledge, "acknowledge push button (normally open)", False)
    channel = 0
    for row in rows:
        if row["driven"]:
            channel += 1
            row["channel"] = channel
    return rows


def _text(x, y, text, *, size=12, anchor="start", weight="normal", fill="#222", extra="") -> str:
    return (f'<text x="{x}" y="{y}" font-size="{size}" text-anchor="{anchor}" font-weight="{weight}" '
            f'fill="{fill}"{extra}>{escape(str(text))}</text>')


def render_svg(pinmap) -> str:
    """The diagram as SVG text; the same pin map always gives the same bytes."""
    header = header_pins(pinmap.model)
    physical = {int(name[4:]): number for number, name in header.items() if name.startswith("GPIO")}
    grounds = sorted(n for n, name in header.items() if name == "GND")
    rows = rows_of(pinmap)
    channels = sum(r["driven"] for r in rows)
    bottom = TOP + ROW_H * len(rows)
    height = max(bottom, TOP + 20 * 16) + 290
    source = f"hardware/pinmaps/{pinmap.source.name}" if pinmap.source else pinmap.name
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="DejaVu Sans, Arial, sans-serif">',
        f'<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="#ffffff"/>',
        _text(X_PI, 36, f"counterguard wiring: {pinmap.name} ({pinmap.model or 'board not named'})", size=20,
              weight="bold"),
        _text(X_PI, 58, f"Drawn from {source} by `counterguard wiring`; regenerate it, do not edit it. "
                        "BCM numbering; header pins are physical positions.", size=12, fill="#555"),
        _text(X_PI, TOP - 22, "Raspberry Pi header", weight="bold"),
        _text(X_DRIVER, TOP - 22, f"driver board ({channels} channels)", weight="bold"),
        _text(X_DEVICE, TOP - 22, "device", weight="bold"),
        # The driver board: one low-side channel per lamp or buzzer; its GND is shared with the Pi's.
        f'<rect x="{X_DRIVER}" y="{TOP - 12}" width="150" height="{ROW_H * channels + 4}" rx="6" '
        'fill="#f5f5f5" stroke="#555"/>',
    ]
    group_start = None
    for i, row in enumerate(rows):
        y = TOP + ROW_H * i + 8
        colour = COLOURS[row["role"]]
        pin = physical[row["bcm"]]
        attrs = (f'class="wire" data-bcm="{row["bcm"]}" data-header-pin="{pin}" '
                 f'data-role={quoteattr(row["label"])}')
        out.append(f"<g {attrs}>")
        out.append(f"<title>{escape(row['label'])}: GPIO{row['bcm']} (header pin {pin})</title>")
        out.append(f'<rect x="{X_PI}" y="{y - 12}" width="200" height="20" rx="4" fill="#eef" stroke="#88a"/>')
        out.append(_text(X_PI + 8, y + 3, f"GPIO{row['bcm']}", weight="bold"))
        out.append(_text(X_PI + 192, y + 3, f"pin {pin}", anchor="end", fill="#555"))
        if row["driven"]:
            out.append(f'<line x1="{X_PI + 200}" y1="{y - 2}" x2="{X_DRIVER}" y2="{y - 2}" stroke="{colour}" '
                       'stroke-width="2"/>')
            out.append(_text(X_DRIVER + 8, y + 3, f"IN{row['channel']}  OUT{row['channel']}"))
            out.append(f'<line x1="{X_DRIVER + 150}" y1="{y - 2}" x2="{X_DEVICE}" y2="{y - 2}" stroke="{colour}" '
                       'stroke-width="2"/>')
        else:
            out.append(f'<line x1="{X_PI + 200}" y1="{y - 2}" x2="{X_DEVICE}" y2="{y - 2}" stroke="{colour}" '
                       'stroke-width="2" stroke-dasharray="6 3"/>')
            ground = min(grounds, key=lambda n: (abs(n - pin), n))  # the nearest GND pin, for a short lead
            out.append(_text(X_DRIVER + 8, y - 6, f"direct; other leg to GND (pin {ground})", size=10,
                             fill="#555"))
        out.append(f'<circle cx="{X_DEVICE + 10}" cy="{y - 2}" r="7" fill="{colour}"/>')
        out.append(_text(X_DEVICE + 24, y + 3, row["label"], weight="bold"))
        out.append(_text(X_DEVICE + 210, y + 3, row["device"], size=11, fill="#555"))
        out.append("</g>")
        if group_start is None:
            group_start = i
        if i + 1 == len(rows) or rows[i + 1]["group"] != row["group"]:
            y0 = TOP + ROW_H * group_start - 8
            out.append(f'<rect x="{X_DEVICE - 6}" y="{y0}" width="{X_HEADER - X_DEVICE - 24}" '
                       f'height="{ROW_H * (i - group_start + 1) - 2}" rx="6" fill="none" stroke="#bbb"/>')
            group_start = None
    out += _header_picture(header, {physical[r["bcm"]]: r for r in rows})
    out += _notes(bottom + 30, grounds)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _header_picture(header: dict[int, str], used: dict[int, dict]) -> list[str]:
    out = [_text(X_HEADER + 70, TOP - 22, "40-pin header (pin 1 top left)", anchor="middle", weight="bold"),
           f'<rect x="{X_HEADER + 40}" y="{TOP - 12}" width="60" height="{20 * 16 + 8}" rx="4" fill="#263238"/>']
    for number, name in sorted(header.items()):
        col, row = (number - 1) % 2, (number - 1) // 2
        cx, cy = X_HEADER + 58 + col * 24, TOP + row * 16
        if number in used:
            r = used[number]
            fill = COLOURS[r["role"]]
            extra = f' class="header-pin" data-bcm="{r["bcm"]}"'
        else:
            fill = {"GND": "#000000", "3V3": "#ff8a65", "5V": "#e53935"}.get(name, "#9e9e9e")
            extra = ' class="header-pin"'
        out.append(f'<circle cx="{cx}" cy="{cy}" r="6" fill="{fill}" stroke="#fff"{extra}/>')
        label = f"{number} {name}" if col else f"{name} {number}"
        out.append(_text(X_HEADER + (104 if col else 36), cy + 4, label, size=9, anchor="start" if col else "end",
                         fill="#222" if number in used else "#888"))
    return out


def _notes(y: int, grounds: list[int]) -> list[str]:
    lines = [
        ("Lamps and buzzers", True),
        ("Each lamp and buzzer is switched by one driver channel: a GPIO high (3.3 V) turns it on. 12/24 V tower "
         "lights and panel lamps need the driver board", False),
        ("(low-side MOSFET or relay, active-high inputs); never wire a lamp to a GPIO pin. Lamp + to the 12/24 V "
         f"supply, lamp - to OUTn; driver GND to Pi GND (pin {grounds[0]}).", False),
        ("Counter lines (RS-485)", True),
        ("Pi USB -> USB-RS485 adapter -> twisted pair (A-A, B-B, GND) -> MAX3485 on the counter node -> teller "
         "terminal by USB. 120 ohm across A-B at both ends.", False),
        ("One adapter per counter node, each a [[serial]] port in the gateway config. Check it all with "
         "`counterguard selftest`. See hardware/README.md.", False),
    ]
    out = []
    for text, heading in lines:
        y += 26 if heading else 18
        out.append(_text(X_PI, y, text, size=14 if heading else 12, weight="bold" if heading else "normal"))
    # A small drawing of one counter line.
    y += 30
    boxes = [("Raspberry Pi (USB)", 0), ("USB-RS485 adapter", 220), ("counter node: Pico + MAX3485", 520),
             ("teller terminal", 820)]
    for label, dx in boxes:
        out.append(f'<rect x="{X_PI + dx}" y="{y}" width="190" height="40" rx="6" fill="#f5f5f5" stroke="#555"/>')
        out.append(_text(X_PI + dx + 95, y + 25, label, anchor="middle", size=11))
    for (_, a), (_, b), label in zip(boxes, boxes[1:], ("USB", "RS-485: A, B, GND", "USB")):
        out.append(f'<line x1="{X_PI + a + 190}" y1="{y + 20}" x2="{X_PI + b}" y2="{y + 20}" stroke="#555" '
                   'stroke-width="2"/>')
        out.append(_text(X_PI + (a + 190 + b) // 2, y + 12, label, anchor="middle", size=10, fill="#555"))
    return out


# -- the shipped diagrams ----------------------------------------------------------------------------
def shipped_pinmaps() -> list[Path]:
    return sorted((HERE / "pinmaps").glob("*.toml"))


def diagram_path(pinmap_path: Path) -> Path:
    return HERE / f"wiring-{Path(pinmap_path).stem}.svg"


def write_all() -> list[Path]:
    """Regenerate hardware/wiring-<map>.svg for every shipped pin map; the paths written."""
    from counterguard.hardware.pinmap import load_pinmap

    written = []
    for path in shipped_pinmaps():
        target = diagram_path(path)
        target.write_text(render_svg(load_pinmap(path)), encoding="utf-8")
        written.append(target)
    return written


def stale_diagrams() -> list[Path]:
    """Shipped diagrams that are missing or differ from what their pin map draws now."""
    from counterguard.hardware.pinmap import load_pinmap

    stale = []
    for path in shipped_pinmaps():
        target = diagram_path(path)
        if not target.exists() or target.read_text(encoding="utf-8") != render_svg(load_pinmap(path)):
            stale.append(target)
    return stale
