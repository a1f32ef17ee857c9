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


def small_crc(below: int) -> tuple[int, str]:
    """The first heartbeat ``$HB <seq> {}`` whose CRC is below ``below``, and that CRC as 8 hex digits."""
    seq = next(n for n in range(1, 1 << 20) if zlib.crc32(b"HB %d {}" % n) < below)
    return seq, "%08x" % zlib.crc32(b"HB %d {}" % seq)


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
ANSWERS = ('{"event_id":"b17-c3-000042","by":"T0031","answers":{"told_to_by_caller":"yes",'
           '"knows_payee_in_person":"no","told_to_keep_secret":"declined"}}')
LONG_PAYLOAD = '{"pad":"' + "x" * 1100 + '"}'
MAX_OK = '{"pad":"' + "x" * (1024 - 10) + '"}'
OVER_BY_ONE = '{"pad":"' + "x" * (1024 - 9) + '"}'
NESTED_32 = '{"a":' * 31 + '["[[[{"]' + '}' * 31  # brackets in a string do not count
NESTED_33 = '{"a":' * 32 + '[1]' + '}' * 32
TOO_BIG_INT = "1" + "0" * 400  # no 64-bit double holds it


def event_with(**fields) -> str:
    """EVENT with fields replaced or added, as compact JSON text (values given as JSON text)."""
    body = json.loads(EVENT)
    text = EVENT
    for name, value in fields.items():
        old = json.dumps(body[name], separators=(",", ":")) if name in body else None
        text = text.replace(f'"{name}":{old}', f'"{name}":{value}') if old else text[:-1] + f',"{name}":{value}}}'
    return text


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
    # The CRC is exactly 8 hex digits: a prefix, a sign, a space or a '_' that a lax hex parser skips
    # is refused even when the value would match (these heartbeats' CRCs start with zeros).
    seq, crc = small_crc(0x01000000)
    yield "CRC written with 0x", frame("HB", seq, "{}", crc="0x" + crc[2:]), [err("bad_frame", seq)]
    yield "CRC with an underscore", frame("HB", seq, "{}", crc="0_" + crc[2:]), [err("bad_frame", seq)]
    seq, crc = small_crc(0x10000000)
    yield "CRC with a sign", frame("HB", seq, "{}", crc="+" + crc[1:]), [err("bad_frame", seq)]
    yield "CRC with a space", frame("HB", seq, "{}", crc=" " + crc[1:]), [err("bad_frame", seq)]
    yield "sequence number out of range", frame("HB", 4294967296, "{}"), [err("bad_frame", 0)]
    yield "sequence number not a number", frame("HB", "x1", "{}"), [err("bad_frame", 0)]
    yield "missing payload", b"$HB 15*" + ("%08x" % (zlib.crc32(b"HB 15") & 0xFFFFFFFF)).encode() + b"\n", [
        err("bad_frame", 15)]
    yield "gateway heartbeat: role and ts in Unix seconds", frame("HB", 7, '{"role":"gateway","ts":1764748800.125}'), [
        ok("HB", 7, {"role": "gateway", "ts": 1764748800.125})]
    # The sequence number: plain decimal as encoders write it, and never 0 on an event.
    yield "event with sequence number 0", frame("EVT", 0, EVENT), [err("bad_frame", 0)]
    yield "answers frame", frame("ANS", 9, ANSWERS), [ok("ANS", 9, json.loads(ANSWERS))]
    yield "answers with sequence number 0", frame("ANS", 0, ANSWERS), [err("bad_frame", 0)]
    yield "heartbeat with sequence number 0", frame("HB", 0, "{}"), [ok("HB", 0, {})]
    yield "NAK with sequence number 0 (frame unreadable)", frame("NAK", 0, '{"code":"noise","detail":"x"}'), [
        ok("NAK", 0, {"code": "noise", "detail": "x"})]
    yield "leading zeros in the sequence number", frame("EVT", "007", EVENT), [err("bad_frame", 0)]
    yield "a lone zero then digits is refused too", frame("HB", "00", "{}"), [err("bad_frame", 0)]
    yield "sequence number 4294967295", frame("HB", 4294967295, "{}"), [ok("HB", 4294967295, {})]
    yield "sequence number with a sign", frame("HB", "+7", "{}"), [err("bad_frame", 0)]
    # The order of the checks (docs/protocol.md, "Decoding"): CRC, then TYPE SEQ PAYLOAD, then SEQ,
    # then TYPE, then length, then JSON.
    yield "wrong CRC on an unknown type: the CRC is checked first", frame("FOO", 5, "{}", crc="00000000"), [
        err("bad_crc", 5)]
    yield "wrong CRC and leading zeros: the seq is unreadable", frame("EVT", "007", "{}", crc="00000000"), [
        err("bad_crc", 0)]
    yield "unknown type with a bad sequence number: SEQ before TYPE", frame("FOO", "x", "{}"), [err("bad_frame", 0)]
    yield "unknown type with a payload too long: TYPE before length", frame("FOO", 18, OVER_BY_ONE), [
        err("bad_type", 18)]
    yield "payload too long and not JSON: length before JSON", frame("EVT", 19, OVER_BY_ONE[:-1] + "]"), [
        err("too_long", 19)]
    # Strict JSON: a repeated key, NaN, the infinities and numbers no double holds are not JSON.
    twice = event_with(account='"6222020200112233445","account":"6222000000000000001"')
    yield "duplicate key", frame("EVT", 20, twice), [err("bad_json", 20)]
    yield "duplicate key in a nested object", frame("EVT", 21, '{"x":{"a":1,"b":2,"a":1}}'), [err("bad_json", 21)]
    yield "duplicate key spelled with an escape", frame("EVT", 22, r'{"a":1,"\u0061":2}'), [
        err("bad_json", 22)]
    apart = '{"a":{"k":1},"b":{"k":1},"l":[{"k":1},{"k":2}]}'
    yield "same key in two objects is not a duplicate", frame("EVT", 23, apart), [
        ok("EVT", 23, {"a": {"k": 1}, "b": {"k": 1}, "l": [{"k": 1}, {"k": 2}]})]
    yield "NaN in an unknown field", frame("EVT", 24, event_with(note="NaN")), [err("bad_json", 24)]
    yield "Infinity in an unknown field", frame("EVT", 25, event_with(note="Infinity")), [err("bad_json", 25)]
    yield "-Infinity in an unknown field", frame("EVT", 26, event_with(note="-Infinity")), [err("bad_json", 26)]
    yield "1e400 in an unknown field", frame("EVT", 27, event_with(note="1e400")), [err("bad_json", 27)]
    yield "-1e400 in a list", frame("EVT", 28, event_with(note="[1,-1e400]")), [err("bad_json", 28)]
    yield "an integer no double holds", frame("EVT", 29, event_with(note=TOO_BIG_INT)), [err("bad_json", 29)]
    yield "1e308 is a number", frame("EVT", 30, '{"note":1e308}'), [ok("EVT", 30, {"note": 1e308})]
    # JSON grammar exactly (RFC 8259): what a lenient parser takes is bad_json here too.
    for n, (name, payload) in enumerate((
            ("two numbers with a space between (never joined into one)", '{"amount":5 0000}'),
            ("a number with a leading zero", '{"amount":050000}'),
            ("a number ending in a point", '{"amount":50000.}'),
            ("a trailing comma in an object", '{"amount":50000,}'),
            ("a trailing comma in a list", '{"teller_flags":["urgent",]}'),
            ("a raw tab inside a string", "{\"note\":\"a\tb\"}"),
            ("an unknown escape in a string", r'{"note":"\q"}'),
            ("a key without a colon", '{"amount" 50000}'),
            ("a literal run into a number", '{"payee_new":null1}'),
            ("a second value after the object", '{"amount":1}{"amount":2}'),
    ), 60):
        yield "not JSON: " + name, frame("EVT", n, payload), [err("bad_json", n)]
    # Event ids that are not printable text are good frames; the gateway refuses the event
    # (see the "gateway" section).
    surrogate = event_with(event_id=r'"x\ud800"')
    yield "event_id with a lone surrogate is a good frame", frame("EVT", 31, surrogate), [
        ok("EVT", 31, json.loads(surrogate))]
    yield "three good frames back to back", frame("HB", 1, "{}") + frame("HB", 2, "{}") + frame("HB", 3, "{}"), [
        ok("HB", 1, {}), ok("HB", 2, {}), ok("HB", 3, {})]


def gateway_cases():
    # What the gateway answers to one good EVT frame whose event is refused (or taken): the
    # decoder yields a frame; the event schema (docs/events.md) decides.
    def nak(seq, code, field=None):
        answer = {"type": "NAK", "seq": seq, "code": code}
        if field:
            answer["field"] = field
        return answer

    yield "good event", frame("EVT", 42, EVENT), {"type": "ACK", "seq": 42}
    yield "event_id with a lone surrogate", frame("EVT", 40, event_with(event_id=r'"x\ud800"')), nak(
        40, "schema", "event_id")
    yield "event_id with a low surrogate alone", frame("EVT", 41, event_with(event_id=r'"\udc00x"')), nak(
        41, "schema", "event_id")
    yield "event_id with NUL", frame("EVT", 43, event_with(event_id=r'"b17\u0000"')), nak(43, "schema", "event_id")
    yield "event_id with a line feed", frame("EVT", 44, event_with(event_id=r'"b17\nx"')), nak(44, "schema", "event_id")
    yield "event_id with DEL", frame("EVT", 45, event_with(event_id=r'"b17\u007f"')), nak(45, "schema", "event_id")
    yield "event_id with a C1 control", frame("EVT", 46, event_with(event_id=r'"b17\u009b"')), nak(
        46, "schema", "event_id")
    yield "event_id with a right-to-left override", frame("EVT", 47, event_with(event_id=r'"b17-\u202e240000"')), nak(
        47, "schema", "event_id")
    yield "event_id with a left-to-right isolate", frame("EVT", 48, event_with(event_id=r'"b17\u2066x"')), nak(
        48, "schema", "event_id")
    yield "event_id with a right-to-left mark", frame("EVT", 49, event_with(event_id=r'"b17\u200fx"')), nak(
        49, "schema", "event_id")
    yield "event_id with an Arabic letter mark", frame("EVT", 50, event_with(event_id=r'"b17\u061cx"')), nak(
        50, "schema", "event_id")
    yield "event_id in Chinese is printable", frame("EVT", 51, event_with(event_id=r'"\u67dc\u53f0-3-42"')), {
        "type": "ACK", "seq": 51}
    yield "event_id with a space is printable", frame("EVT", 52, event_with(event_id='"b17 c3 42"')), {
        "type": "ACK", "seq": 52}
    yield "duplicate account key", frame("EVT", 53, event_with(
        account='"6222020200112233445","account":"6222000000000000001"')), nak(53, "bad_json")
    yield "NaN amount", frame("EVT", 54, event_with(amount="NaN")), nak(54, "bad_json")
    # Schema v2: who the customer is and where a transfer goes; each field is verified before it is hashed.
    transfer = dict(kind='"transfer_out"', payee_account='"6228480012345678901"')
    yield "v2 event with identity number, phone and payee", frame("EVT", 60, event_with(
        customer_id='"11010519491231002X"', customer_phone='"13800138000"', **transfer)), {"type": "ACK", "seq": 60}
    yield "v2 identity number with a lower-case x", frame("EVT", 61, event_with(customer_id='"11010519491231002x"')), {
        "type": "ACK", "seq": 61}
    yield "v2 passport number", frame("EVT", 62, event_with(customer_id='"E12345678"', customer_id_type='"passport"')), {
        "type": "ACK", "seq": 62}
    yield "v2 identity number with a wrong check digit", frame("EVT", 63, event_with(
        customer_id='"110105194912310021"')), nak(63, "schema", "customer_id")
    yield "v2 identity number with an impossible birth date", frame("EVT", 64, event_with(
        customer_id='"110105194913310027"')), nak(64, "schema", "customer_id")
    yield "v2 identity number of 15 digits", frame("EVT", 65, event_with(customer_id='"110105491231002"')), nak(
        65, "schema", "customer_id")
    yield "v2 unknown customer_id_type", frame("EVT", 66, event_with(
        customer_id='"E12345678"', customer_id_type='"visa"')), nak(66, "schema", "customer_id_type")
    yield "v2 landline in customer_phone", frame("EVT", 67, event_with(customer_phone='"02988887777"')), nak(
        67, "schema", "customer_phone")
    yield "v2 payee_account on a cash withdrawal", frame("EVT", 68, event_with(
        payee_account='"6228480012345678901"')), nak(68, "schema", "payee_account")
    yield "v2 payee_account with letters", frame("EVT", 69, event_with(
        kind='"transfer_out"', payee_account='"62284800ABC"')), nak(69, "schema", "payee_account")
    yield "v2 keyed hash in place of the number", frame("EVT", 70, event_with(customer_id_hash='"' + "ab" * 32 + '"')), {
        "type": "ACK", "seq": 70}
    yield "v2 number and its hash both sent", frame("EVT", 71, event_with(
        customer_id='"11010519491231002X"', customer_id_hash='"' + "ab" * 32 + '"')), nak(71, "schema", "customer_id")


def encode_cases():
    # What an encoder must produce, byte for byte: compact JSON, ASCII only, '$' escaped.
    yield "heartbeat", "HB", 1, {}, frame("HB", 1, "{}")
    yield "event", "EVT", 42, json.loads(EVENT), frame("EVT", 42, EVENT)
    yield "answers", "ANS", 43, json.loads(ANSWERS), frame("ANS", 43, ANSWERS)
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
        "gateway_about": "gateway: one EVT frame each and the gateway's answer to it: an ACK, or a NAK with its "
                         "code and, for schema, the field named (docs/events.md).",
        "gateway": [
            {"name": name, "wire_hex": data.hex(), "answer": answer} for name, data, answer in gateway_cases()
        ],
        "encode": [
            {"name": name, "type": t, "seq": s, "body": body, "wire_hex": data.hex()}
            for name, t, s, body, data in encode_cases()
        ],
    }


if __name__ == "__main__":
    OUT.write_text(json.dumps(build(), indent=1, ensure_ascii=True) + "\n")
    print(f"wrote {OUT}")
