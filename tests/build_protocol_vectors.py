"""Writes docs/protocol_vectors.json: byte streams and what a protocol-v1 decoder must make of them.

The expected results below are stated by hand from docs/protocol.md; this script only computes the
CRCs so the good frames are good. Run it after changing a case:

    python tests/build_protocol_vectors.py
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "docs" / "protocol_vectors.json"


def frame(type_: str, seq, payload: str, *, crc=None, end: str = "\n") -> bytes:
    inner = f"{type_} {seq} {payload}".encode("utf-8")
    crc_text = crc if crc is not None else "%08x" % (zlib.crc32(inner) & 0xFFFFFFFF)
    return b"$" + inner + b"*" + crc_text.encode("ascii") + end.encode("ascii")


def ok(type_, seq, body):
    return {"type": type_, "seq": seq, "body": body}


def err(code, seq=0):
    return {"error": code, "seq": seq}


EVENT = ('{"event_id":"b17-c3-000042","ts":"2024-05-06T09:31:07+08:00","counter":3,'
         '"kind":"cash_withdrawal","account":"6222020200112233445","amount":50000,'
         '"customer_age":67,"teller_flags":["customer_on_phone","urgent"],"purpose":"home"}')
ACK = ('{"event_id":"b17-c3-000042","level":"red","score":0.97,"reasons":["large_cash",'
       '"elderly_customer","customer_on_phone","urgent"],"text":"Hold: 50,000 yuan or more, customer aged 60 or over, '
       'customer on the phone - call supervisor"}')
NAK = '{"code":"schema","detail":"must be one of cash_withdrawal, transfer_out","field":"kind"}'
LONG_PAYLOAD = '{"pad":"' + "x" * 1100 + '"}'
MAX_OK = '{"pad":"' + "x" * (1024 - 10) + '"}'
OVER_BY_ONE = '{"pad":"' + "x" * (1024 - 9) + '"}'
NESTED_32 = '{"a":' * 31 + '["[[[{"]' + '}' * 31  # brackets in a string do not count
NESTED_33 = '{"a":' * 32 + '[1]' + '}' * 32


def cases():
    good_hb = frame("HB", 2, "{}")
    yield "heartbeat", frame("HB", 1, "{}"), [ok("HB", 1, {})]
    yield "event", frame("EVT", 42, EVENT), [ok("EVT", 42, json.loads(EVENT))]
    yield "ack", frame("ACK", 42, ACK), [ok("ACK", 42, json.loads(ACK))]
    yield "nak", frame("NAK", 43, NAK), [ok("NAK", 43, json.loads(NAK))]
    yield "crlf line end is accepted", frame("HB", 5, "{}", end="\r\n"), [ok("HB", 5, {})]
    upper = frame("HB", 6, "{}")
    upper = upper[:-9] + upper[-9:-1].upper() + b"\n"
    yield "upper-case CRC is accepted", upper, [ok("HB", 6, {})]
    yield "escaped dollar inside a payload", frame("EVT", 8, '{"note":"\\u0024 sign"}'), [ok("EVT", 8, {"note": "$ sign"})]
    yield "blank lines are ignored", b"\n\r\n  \n" + good_hb, [ok("HB", 2, {})]
    yield "wrong CRC names the frame's seq", frame("EVT", 7, "{}", crc="00000000"), [err("bad_crc", 7)]
    yield "noise line, then a good frame", b"\x00\xffhello there\n" + good_hb, [err("noise"), ok("HB", 2, {})]
    yield "noise before a frame on the same line", b"garbage" + good_hb, [err("noise"), ok("HB", 2, {})]
    cut = frame("EVT", 3, EVENT)[:40]
    yield "cut frame, then a good frame", cut + good_hb, [err("bad_frame", 3), ok("HB", 2, {})]
    yield "frame too long, then a good frame", frame("EVT", 9, LONG_PAYLOAD) + good_hb, [err("too_long", 9), ok("HB", 2, {})]
    yield "payload of exactly 1024 bytes", frame("EVT", 10, MAX_OK), [ok("EVT", 10, json.loads(MAX_OK))]
    yield "payload of 1025 bytes", frame("EVT", 11, OVER_BY_ONE), [err("too_long", 11)]
    yield "bad JSON", frame("EVT", 4, '{"amount":'), [err("bad_json", 4)]
    yield "JSON that is not an object", frame("EVT", 12, "[1,2]"), [err("bad_json", 12)]
    yield "payload nested 32 levels deep", frame("EVT", 16, NESTED_32), [ok("EVT", 16, json.loads(NESTED_32))]
    yield "payload nested 33 levels deep", frame("EVT", 17, NESTED_33) + frame("HB", 2, "{}"), [
        err("bad_json", 17), ok("HB", 2, {})]
    yield "payload that is not UTF-8", b"$EVT 13 {\"a\":\"\xff\"}*" + (
        "%08x" % (zlib.crc32(b'EVT 13 {"a":"\xff"}') & 0xFFFFFFFF)).encode() + b"\n", [err("bad_json", 13)]
    yield "unknown frame type", frame("FOO", 5, "{}"), [err("bad_type", 5)]
    yield "missing CRC", b"$EVT 6 {}\n", [err("bad_frame", 6)]
    yield "CRC that is not hex", frame("EVT", 14, "{}", crc="zzzzzzzz"), [err("bad_frame", 14)]
    yield "sequence number out of range", frame("HB", 4294967296, "{}"), [err("bad_frame", 0)]
    yield "sequence number not a number", frame("HB", "x1", "{}"), [err("bad_frame", 0)]
    yield "missing payload", b"$HB 15*" + ("%08x" % (zlib.crc32(b"HB 15") & 0xFFFFFFFF)).encode() + b"\n", [
        err("bad_frame", 15)]
    yield "three good frames back to back", frame("HB", 1, "{}") + frame("HB", 2, "{}") + frame("HB", 3, "{}"), [
        ok("HB", 1, {}), ok("HB", 2, {}), ok("HB", 3, {})]


def encode_cases():
    # What an encoder must produce, byte for byte: compact JSON, ASCII only, '$' escaped.
    yield "heartbeat", "HB", 1, {}, frame("HB", 1, "{}")
    yield "event", "EVT", 42, json.loads(EVENT), frame("EVT", 42, EVENT)
    yield "dollar escaped", "EVT", 8, {"note": "$ sign"}, frame("EVT", 8, '{"note":"\\u0024 sign"}')
    yield "non-ASCII escaped", "EVT", 9, {"note": "\u5173\u7231"}, frame("EVT", 9, '{"note":"\\u5173\\u7231"}')


def build() -> dict:
    return {
        "protocol": 1,
        "about": "Wire protocol v1 test vectors (docs/protocol.md). decode: feed wire_hex to a fresh "
                 "decoder; it must yield exactly `expect` (frames with type, seq, JSON body; errors with "
                 "code and seq). encode: encoding type, seq and body must give wire_hex byte for byte.",
        "decode": [
            {"name": name, "wire_hex": data.hex(), "expect": expect} for name, data, expect in cases()
        ],
        "encode": [
            {"name": name, "type": t, "seq": s, "body": body, "wire_hex": data.hex()}
            for name, t, s, body, data in encode_cases()
        ],
    }


if __name__ == "__main__":
    OUT.write_text(json.dumps(build(), indent=1, ensure_ascii=True) + "\n")
    print(f"wrote {OUT}")
