"""Coverage-guided fuzzing of the counter line's frame decoder (atheris, i.e. libFuzzer for Python).

    .venv/bin/python fuzz/fuzz_wire.py /tmp/wire-corpus fuzz/corpus/wire -max_total_time=60 \
        -artifact_prefix=fuzz/regressions/wire-
    .venv/bin/python fuzz/fuzz_wire.py fuzz/regressions/wire-*      # replay saved crashes

``check(data)`` holds the decoder's promises for one input and raises on a broken one; the fuzzer
keeps every input that raises as a crash file, and tests/test_fuzz.py replays fuzz/regressions/
on every run. The first byte picks the read size, so the fuzzer also explores how a serial driver
happens to split the stream.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runs from a checkout as it is

if __name__ == "__main__":  # fuzzing: instrument only the project's modules (all of Python takes long)
    import atheris

    with atheris.instrument_imports(include=["gateway"]):
        from counterguard.core import wire
        from counterguard.core.events import SchemaError, parse_event
else:
    from counterguard.core import wire
    from counterguard.core.events import SchemaError, parse_event

RESYNC = wire.encode_frame("HB", 1, {})


def check(data: bytes) -> None:
    if not data:
        return
    step, stream = data[0] % 64 + 1, data[1:]
    whole = wire.FrameDecoder().feed(stream)
    decoder, chunked = wire.FrameDecoder(), []
    for i in range(0, len(stream), step):
        chunked += decoder.feed(stream[i:i + step])
    assert chunked == whole, "the same bytes split differently decoded differently"
    for item in whole:
        if isinstance(item, wire.FrameError):
            assert item.code in wire.NAK_CODES, item
            wire.encode_frame("NAK", item.seq, item.nak_body())  # the gateway can always answer it
            continue
        assert item.type in wire.TYPES and isinstance(item.body, dict), item
        if b"\r" not in item.payload:  # encoders never write a CR inside a payload; decoders allow it
            assert wire.FrameDecoder().feed(wire.encode_frame(item.type, item.seq, item.payload)) == [item]
        if item.type == "EVT":
            try:
                parse_event(item.body)
            except SchemaError as exc:
                nak = wire.FrameError(wire.SCHEMA, item.seq, exc.detail, exc.field)
                wire.encode_frame("NAK", item.seq, nak.nak_body())
    # Whatever came before, the next good frame is decoded.
    assert decoder.feed(RESYNC)[-1] == wire.Frame("HB", 1, {}), "no resynchronisation after this input"


def main() -> None:
    atheris.Setup(sys.argv, check)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
