"""Coverage-guided fuzzing of the event validator behind the counter line (atheris).

    .venv/bin/python fuzz/fuzz_events.py /tmp/events-corpus fuzz/corpus/events -max_total_time=60 \
        -artifact_prefix=fuzz/regressions/events-

An input is the payload of one EVT frame, as a terminal would send it. ``check(data)`` holds the
validator's promises: it answers with an Event or a SchemaError naming a field (never anything
else), the NAK for a refusal fits in a frame, and an accepted event reads the same after a trip
over the wire.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runs from a checkout as it is

if __name__ == "__main__":  # fuzzing: instrument only the project's modules (all of Python takes long)
    import atheris

    with atheris.instrument_imports(include=["gateway"]):
        from counterguard.core import wire
        from counterguard.core.events import Event, SchemaError, parse_event
else:
    from counterguard.core import wire
    from counterguard.core.events import Event, SchemaError, parse_event

FIELDS = {f.name for f in dataclasses.fields(Event)} - {"extra"}


def check(data: bytes) -> None:
    payload = data.replace(b"\n", b" ").replace(b"\r", b" ").replace(b"$", b" ")[: wire.MAX_PAYLOAD]
    inner = b"EVT 7 " + payload
    frame = wire.decode_line(b"$" + inner + b"*%08x" % wire.crc32(inner))
    if isinstance(frame, wire.FrameError):
        assert frame.code == wire.BAD_JSON, frame
        wire.encode_frame("NAK", frame.seq, frame.nak_body())
        return
    try:
        event = parse_event(frame.body)
    except SchemaError as exc:
        assert exc.field in FIELDS or exc.field == "event", exc.field
        wire.encode_frame("NAK", 7, wire.FrameError(wire.SCHEMA, 7, exc.detail, exc.field).nak_body())
        return
    [again] = wire.FrameDecoder().feed(wire.encode_frame("EVT", 7, wire.encode_payload(frame.body)))
    assert parse_event(again.body) == event, "an accepted event changed on the wire"


def main() -> None:
    atheris.Setup(sys.argv, check)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
