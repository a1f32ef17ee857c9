"""Coverage-guided fuzzing of the whole counter path (atheris): bytes -> frame decoder -> event
validation -> store (a real SQLite file in a temporary directory) -> scoring (the bundled TFLite
model and a watchlist) -> replies.

    .venv/bin/python fuzz/fuzz_counter.py /tmp/counter-corpus fuzz/corpus/counter -max_total_time=60 \
        -artifact_prefix=fuzz/regressions/counter-
    .venv/bin/python fuzz/fuzz_counter.py fuzz/regressions/counter-*      # replay saved crashes

An input is used three times in one batch, as a counter could send it: as raw bytes on the line
(noise, cut frames, anything), as the payload of an EVT frame with a correct CRC (so it reaches the
event validator, the store and the model) and as the payload of an ANS frame (the customer's
answers, the final verdict). A good event follows in the same batch, and another in
the next batch. ``check(data)`` holds the promise the counter relies on: every frame gets exactly
one reply, in order, with its own sequence number, and the good events after it are still ACKed.
A ``NAK internal`` keeps that promise (the gateway logged a fault of its own and went on).
"""

from __future__ import annotations

import atexit
import logging
import shutil
import sys
import tempfile
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runs from a checkout as it is

if __name__ == "__main__":  # fuzzing: instrument only the project's modules (all of Python takes long)
    import atheris

    with atheris.instrument_imports(include=["gateway"]):
        from counterguard.core import wire
        from counterguard.gateway.scoring.model import FraudModel, default_model_path
        from counterguard.gateway.counter.pipeline import Pipeline
        from counterguard.gateway.scoring.assessor import Assessor
        from counterguard.gateway.store.db import Store
        from counterguard.gateway.scoring.watchlist import Watchlist
else:
    from counterguard.core import wire
    from counterguard.gateway.scoring.model import FraudModel, default_model_path
    from counterguard.gateway.counter.pipeline import Pipeline
    from counterguard.gateway.scoring.assessor import Assessor
    from counterguard.gateway.store.db import Store
    from counterguard.gateway.scoring.watchlist import Watchlist

CST = timezone(timedelta(hours=8))
MULE = "6217000099887766554"  # on the watchlist: the good event below is sometimes red
_pipeline = None


def pipeline() -> Pipeline:
    """One gateway pipeline per process, on a store file that is removed at exit."""
    global _pipeline
    if _pipeline is None:
        where = Path(tempfile.mkdtemp(prefix="fuzz-counter-"))
        atexit.register(shutil.rmtree, where, ignore_errors=True)
        store = Store(where / "gateway.db", synchronous="NORMAL")
        (where / "stop-payment.txt").write_text(MULE + "\n")
        watchlist = Watchlist(store, None)
        watchlist.load_file(where / "stop-payment.txt")
        model = FraudModel.load(default_model_path())
        _pipeline = Pipeline(Assessor(store, watchlist, model, model.thresholds), gateway_id="gw-fuzz")
    return _pipeline


def good_event(n: int) -> bytes:
    account = MULE if n % 7 == 0 else f"62220202{n % 997:011d}"
    return wire.encode_payload({"event_id": f"fuzz-good-{uuid.uuid4().hex}", "counter": 1 + n % 4,
                                "ts": datetime.now(CST).isoformat(timespec="seconds"), "kind": "cash_withdrawal",
                                "account": account, "amount": 100 + n % 5000})


def framed(data: bytes, type_: bytes = b"EVT", seq: int = 7) -> bytes:
    """``data`` as the payload of a frame with a correct CRC (what cannot be in a payload blanked)."""
    payload = data.replace(b"\n", b" ").replace(b"\r", b" ").replace(b"$", b" ")[: wire.MAX_PAYLOAD]
    inner = type_ + b" %d " % seq + payload
    return b"$" + inner + b"*%08x\n" % wire.crc32(inner)


def answer(stream: bytes) -> tuple[list, list]:
    """(items decoded from ``stream``, replies the pipeline wrote for them), checking one each."""
    items = wire.FrameDecoder().feed(stream)
    outcome = pipeline().process(items)
    replies = wire.FrameDecoder().feed(outcome.replies)
    assert all(isinstance(r, wire.Frame) for r in replies), f"a reply is not a good frame: {replies}"
    assert len(replies) == len(items), f"{len(items)} frame(s) got {len(replies)} replies"
    for item, reply in zip(items, replies):
        assert reply.seq == item.seq, f"reply {reply} answers seq {reply.seq}, not {item.seq}"
        expected = ("HB",) if isinstance(item, wire.Frame) and item.type == "HB" else ("ACK", "NAK")
        assert reply.type in expected, f"{item} was answered {reply.type}"
    return items, replies


_n = 0


def check(data: bytes) -> None:
    global _n
    _n += 1
    good = wire.encode_frame("EVT", 4242, good_event(_n))
    # As an event, then as the customer's answers (an ANS frame reaches the dialogue path and the
    # event it names, if the input's own event was taken).
    items, replies = answer(data + b"\n" + framed(data) + framed(data, b"ANS", 8) + good)
    assert isinstance(items[-1], wire.Frame) and items[-1].seq == 4242, items[-1]
    assert replies[-1].type == "ACK", f"the good event after the input was answered {replies[-1]}"
    # The next batch too: nothing the input did may leave the store or the line wedged.
    _, [after] = answer(wire.encode_frame("EVT", 4343, good_event(_n + 1)))
    assert after.type == "ACK", f"the next batch's good event was answered {after}"


def main() -> None:
    # A frame the gateway fails on is logged with its traceback; thousands a second drown the run.
    logging.getLogger("counterguard.gateway.counter.pipeline").setLevel(logging.CRITICAL)
    pipeline()  # load the model before fuzzing starts, not inside the first input's time
    atheris.Setup(sys.argv, check)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
