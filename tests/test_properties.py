"""Bad input, property by property: whatever bytes a terminal sends and whatever JSON a sender puts
in them, the frame decoder and the event validator answer with a frame, a documented error or a
SchemaError naming the field, and never with a crash that would silence a counter line.

Hypothesis generates the inputs; a failing example is shrunk and printed, and belongs in
fuzz/regressions/ once found (tests/test_fuzz.py replays that folder).
"""

from __future__ import annotations

import dataclasses
import json
import math

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from counterguard.centre import schema
from counterguard.core import manifest, messages, wire
from counterguard.core.events import MONEY_KINDS, PURPOSES, REQUIRED, TELLER_FLAGS, Event, SchemaError, parse_event

# No example database in the working tree; no deadline on a machine shared with other test runs.
checked = settings(database=None, deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])

# The fields the validator knows are the Event's own; anything else is kept in ``extra``.
KNOWN_FIELDS = {f.name for f in dataclasses.fields(Event)} - {"extra"}

# Bytes a line really carries: mostly the protocol's own punctuation, so frames half-form and break.
line_bytes = st.one_of(
    st.binary(max_size=300),
    st.lists(st.sampled_from([b"$", b"\n", b"\r", b"*", b" ", b"EVT", b"HB", b"NAK", b"1", b"42", b"{}",
                              b'{"a":1}', b"[", b"00000000", b"\xff", b"x" * 700]), max_size=40).map(b"".join),
)
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
json_objects = st.dictionaries(st.text(max_size=12), json_values, max_size=6)


def frames_of(items) -> list:
    return [i for i in items if isinstance(i, wire.Frame)]


def feed_in_chunks(data: bytes, cuts: list[int]) -> list:
    decoder = wire.FrameDecoder()
    out, start = [], 0
    for cut in sorted(c % (len(data) + 1) for c in cuts) + [len(data)]:
        out += decoder.feed(data[start:cut])
        start = max(start, cut)
    return out


def assert_documented(items) -> None:
    """Only frames or documented errors, and the gateway can always answer an error with a NAK."""
    for item in items:
        if isinstance(item, wire.Frame):
            assert item.type in wire.TYPES and 0 <= item.seq <= wire.MAX_SEQ and isinstance(item.body, dict)
            assert len(item.payload) <= wire.MAX_PAYLOAD
        else:
            assert isinstance(item, wire.FrameError), item
            assert item.code in wire.NAK_CODES and 0 <= item.seq <= wire.MAX_SEQ and item.detail
            nak = wire.encode_frame("NAK", item.seq, item.nak_body())  # raises if the NAK cannot be sent
            assert len(nak) <= wire.MAX_FRAME


# -- frame decoder ---------------------------------------------------------------------------------
@checked
@given(data=line_bytes, cuts=st.lists(st.integers(min_value=0), max_size=8))
def test_any_bytes_in_any_chunking_decode_to_the_same_frames_and_documented_errors(data, cuts):
    whole = wire.FrameDecoder().feed(data)
    assert_documented(whole)
    # How the serial driver happens to split the stream never changes what is decoded.
    assert feed_in_chunks(data, cuts) == whole


@checked
@given(noise=line_bytes, type_=st.sampled_from(wire.TYPES), seq=st.integers(0, wire.MAX_SEQ),
       body=json_objects, tail=line_bytes)
def test_a_good_frame_after_any_garbage_is_decoded(noise, type_, seq, body, tail):
    frame = encode_or_skip(type_, seq, body)
    items = wire.FrameDecoder().feed(noise + frame + tail)
    assert_documented(items)
    assert wire.Frame(type_, seq, body) in frames_of(items)


def encode_or_skip(type_, seq, body) -> bytes:
    try:
        return wire.encode_frame(type_, seq, body)
    except ValueError:  # over 1 KiB: the encoder refuses it, as documented
        assume(False)


@checked
@given(type_=st.sampled_from(wire.TYPES), seq=st.integers(0, wire.MAX_SEQ), body=json_objects,
       cuts=st.lists(st.integers(min_value=0), max_size=6))
def test_encode_then_decode_gives_back_the_frame(type_, seq, body, cuts):
    frame = encode_or_skip(type_, seq, body)
    [decoded] = feed_in_chunks(frame, cuts)
    assert decoded == wire.Frame(type_, seq, body) and wire.crc32(frame[1:frame.rindex(b"*")]) == int(frame[-9:-1], 16)


@checked
@given(data=line_bytes)
def test_decode_line_answers_any_line_with_a_frame_or_a_documented_error(data):
    line = data.split(b"\n")[0]
    assert_documented([wire.decode_line(line)])


def test_the_nak_for_a_frame_that_quotes_a_kilobyte_of_junk_still_fits_in_a_frame():
    inner = b"X" * 1000 + b" 7 {}"
    [error] = wire.FrameDecoder().feed(b"$" + inner + b"*%08x\n" % wire.crc32(inner))
    assert error.code == wire.BAD_TYPE and error.seq == 7
    nak = wire.FrameDecoder().feed(wire.encode_frame("NAK", error.seq, error.nak_body()))
    assert nak[0].body["code"] == "bad_type" and nak[0].body["detail"].startswith("unknown frame type 'XXX")


def test_a_payload_nested_a_thousand_deep_is_bad_json_not_a_dead_line():
    items = wire.FrameDecoder().feed(wire.encode_frame("EVT", 9, b"[" * 1020) + wire.encode_frame("HB", 10, {}))
    assert items[0] == wire.FrameError(wire.BAD_JSON, 9, "payload is not JSON: nested too deeply (more than 32 levels)")
    assert items[1] == wire.Frame("HB", 10, {})


# -- event validator -------------------------------------------------------------------------------
account = st.from_regex(r"[0-9]{6,34}", fullmatch=True)
timestamp = st.builds(
    lambda y, mo, d, h, mi, s, frac, off: f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}{frac}{off}",
    st.integers(1970, 2100), st.integers(1, 12), st.integers(1, 28), st.integers(0, 23), st.integers(0, 59),
    st.integers(0, 59), st.sampled_from(["", ".5", ".123", ".123456", ".123456789"]),
    st.sampled_from(["Z", "+08:00", "-05:30", "+00:00"]))
money = st.one_of(st.integers(1, 10**10), st.floats(0.01, 1e10, allow_nan=False))
valid_events = st.fixed_dictionaries(
    {"event_id": st.text(min_size=1, max_size=64).filter(str.isprintable), "ts": timestamp, "counter": st.integers(1, 64),
     "kind": st.sampled_from(MONEY_KINDS), "account": account, "amount": money},
    optional={"customer_age": st.integers(0, 130), "account_age_days": st.integers(0, 365 * 120),
              "balance_before": st.one_of(st.integers(0, 10**10), st.floats(0, 1e10)),
              "inbound_24h": st.floats(0, 1e10), "inbound_count_24h": st.integers(0, 1_000_000),
              "teller_flags": st.lists(st.sampled_from(TELLER_FLAGS), max_size=5),
              "purpose": st.sampled_from(PURPOSES), "till_note": json_values})
# Every field of a good event, then one or more of them replaced by anything JSON can hold.
field_name = st.sampled_from(sorted(KNOWN_FIELDS))
damaged_events = st.builds(lambda ev, changes: {**ev, **changes}, valid_events,
                           st.dictionaries(field_name, json_values, min_size=1, max_size=3))


@checked
@given(body=valid_events)
def test_every_well_formed_event_is_accepted(body):
    event = parse_event(body)
    assert isinstance(event, Event) and event.event_id == body["event_id"] and event.amount == float(body["amount"])
    assert event.extra == {k: v for k, v in body.items() if k not in KNOWN_FIELDS}


@checked
@given(body=st.one_of(valid_events, damaged_events, json_objects), seq=st.integers(1, wire.MAX_SEQ))
def test_an_accepted_event_survives_the_wire_and_a_refused_one_names_its_field(body, seq):
    try:
        event = parse_event(body)
    except SchemaError as exc:
        # The NAK a terminal gets names a field the event has (or lacks, if required).
        assert exc.field in KNOWN_FIELDS, exc.field
        assert exc.field in body or exc.field in REQUIRED
        assert exc.detail and str(exc).startswith(exc.field)
        nak = wire.FrameError(wire.SCHEMA, seq, exc.detail, exc.field)
        [answer] = wire.FrameDecoder().feed(wire.encode_frame("NAK", seq, nak.nak_body()))
        assert answer.body["field"] == exc.field
        return
    frame = encode_or_skip("EVT", seq, body)
    [decoded] = wire.FrameDecoder().feed(frame)
    again = parse_event(decoded.body)
    assert again == event and again.extra == event.extra and again.ts == event.ts


@checked
@given(body=st.one_of(json_values, json_objects, damaged_events,
                      st.dictionaries(field_name, st.integers(-10**400, 10**400), min_size=1)))
def test_the_validator_raises_nothing_but_its_own_error(body):
    try:
        parse_event(body)
    except SchemaError:
        pass


def test_a_four_hundred_digit_amount_is_a_schema_error_naming_amount():
    body = {"event_id": "e1", "ts": "2024-05-06T09:31:07+08:00", "counter": 3, "kind": "cash_withdrawal",
            "account": "6222020200112233445", "amount": 10**400}
    try:
        parse_event(body)
    except SchemaError as exc:
        assert exc.field == "amount"
    else:
        raise AssertionError("a 400-digit amount was accepted")


# -- downlink and centre parsers: any bytes from the broker ----------------------------------------
junk_payloads = st.one_of(st.binary(max_size=200), json_values.map(lambda v: json.dumps(v).encode()),
                          st.integers(1, 5000).map(lambda n: b"[" * n), st.just(b'{"seqs":[' + b"9" * 30 + b"]}"))


@checked
@given(payload=junk_payloads)
def test_receipts_and_centre_status_from_the_broker_raise_only_downlink_errors(payload):
    for parse in (messages.parse_receipt, messages.parse_centre_status, messages.parse_watchlist_update):
        try:
            parse(payload)
        except messages.DownlinkError as exc:
            assert str(exc)


@checked
@given(payload=junk_payloads)
def test_an_envelope_of_junk_raises_only_manifest_errors(payload):
    try:
        manifest.open_envelope(payload, KEY.public_key(), topic="counterguard/v1/all/manifest/thresholds")
    except manifest.ManifestError as exc:
        assert str(exc)
    else:
        raise AssertionError("junk was accepted as a signed manifest")


@checked
@given(payload=junk_payloads, leaf=st.sampled_from(sorted(schema.LEAF_KIND)))
def test_the_centre_refuses_junk_only_with_a_schema_error(payload, leaf):
    try:
        record = schema.check(f"counterguard/v1/east/b012/gw-7/{leaf}", payload)
    except schema.SchemaError as exc:
        assert str(exc)
    else:
        assert isinstance(record.body, dict) and record.gateway_id == "gw-7"


KEY = manifest.generate_signing_key()


def test_floats_in_json_are_finite_or_refused():
    # json.loads takes NaN; the validator must not let one through as an amount.
    body = {"event_id": "e1", "ts": "2024-05-06T09:31:07+08:00", "counter": 3, "kind": "cash_withdrawal",
            "account": "6222020200112233445", "amount": math.nan}
    try:
        parse_event(json.loads(json.dumps(body)))
    except SchemaError as exc:
        assert exc.field == "amount"
    else:
        raise AssertionError("NaN amount accepted")
