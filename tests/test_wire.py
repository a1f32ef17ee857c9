"""Wire protocol v1: the shared test vectors, resynchronisation, and encode/decode round trips."""

import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from counterguard.core import wire

VECTORS = json.loads((Path(__file__).resolve().parent.parent / "docs" / "protocol_vectors.json").read_text())


def as_dict(item):
    if isinstance(item, wire.Frame):
        return {"type": item.type, "seq": item.seq, "body": item.body}
    return {"error": item.code, "seq": item.seq}


@pytest.mark.parametrize("case", VECTORS["decode"], ids=lambda c: c["name"])
def test_decode_vector_in_one_piece(case):
    got = wire.FrameDecoder().feed(bytes.fromhex(case["wire_hex"]))
    assert [as_dict(x) for x in got] == case["expect"]


@pytest.mark.parametrize("case", VECTORS["decode"], ids=lambda c: c["name"])
def test_decode_vector_byte_by_byte(case):
    # A UART hands over bytes in any chunking; the result must not depend on it.
    decoder = wire.FrameDecoder()
    got = []
    for b in bytes.fromhex(case["wire_hex"]):
        got += decoder.feed(bytes([b]))
    assert [as_dict(x) for x in got] == case["expect"]


@pytest.mark.parametrize("case", VECTORS["encode"], ids=lambda c: c["name"])
def test_encode_vector(case):
    assert wire.encode_frame(case["type"], case["seq"], case["body"]).hex() == case["wire_hex"]


def test_vectors_file_is_what_the_builder_writes():
    import build_protocol_vectors

    assert build_protocol_vectors.build() == VECTORS


def test_every_nak_code_is_documented():
    doc = (Path(__file__).resolve().parent.parent / "docs" / "protocol.md").read_text()
    for code in wire.NAK_CODES:
        assert f"`{code}`" in doc, code


def test_nak_names_the_field():
    err = wire.FrameError(wire.SCHEMA, 7, "must be greater than 0", "amount")
    frame = wire.FrameDecoder().feed(wire.encode_frame("NAK", 7, err.nak_body()))[0]
    assert frame.body == {"code": "schema", "detail": "must be greater than 0", "field": "amount"}


@pytest.mark.parametrize("bad", [
    dict(type_="XYZ", seq=1, body={}),
    dict(type_="EVT", seq=-1, body={}),
    dict(type_="EVT", seq=2**32, body={}),
    dict(type_="EVT", seq=1, body={"pad": "x" * 2000}),
])
def test_encoder_refuses_what_no_decoder_would_accept(bad):
    with pytest.raises(ValueError):
        wire.encode_frame(bad["type_"], bad["seq"], bad["body"])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**9, 10**9) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(seq=st.integers(0, wire.MAX_SEQ), body=st.dictionaries(st.text(max_size=10), json_values, max_size=6),
       noise=st.binary(max_size=40), cut=st.integers(0, 60))
def test_good_frame_survives_any_noise_before_it(seq, body, noise, cut):
    try:
        frame = wire.encode_frame("EVT", seq, body)
    except ValueError:
        return  # over 1 KiB: not a frame anyone may send
    junk = noise + frame[:cut]  # noise, or the start of a frame cut short
    out = wire.FrameDecoder().feed(junk + b"\n" + frame)
    last = out[-1]
    assert isinstance(last, wire.Frame) and last.seq == seq and last.body == body


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=3000))
def test_decoder_never_raises_and_never_invents_frames(data):
    out = wire.FrameDecoder().feed(data)
    for item in out:
        if isinstance(item, wire.Frame):
            # A frame can only come from bytes that carried its exact CRC.
            assert b"$" + item.payload in data or item.payload in data
        else:
            assert item.code in wire.NAK_CODES


@pytest.mark.parametrize("body", [{"score": float("nan")}, {"a": [float("inf")]}, {"a": -float("inf")}])
def test_encoder_refuses_numbers_json_cannot_carry(body):
    with pytest.raises(ValueError):
        wire.encode_payload(body)


def test_an_event_is_never_numbered_0_but_a_nak_and_a_heartbeat_may_be():
    with pytest.raises(ValueError, match="1 or more"):
        wire.encode_frame("EVT", 0, {})
    for type_ in ("NAK", "HB"):
        assert wire.FrameDecoder().feed(wire.encode_frame(type_, 0, {}))[0] == wire.Frame(type_, 0, {})


def test_the_documented_order_of_checks_is_the_decoders():
    # docs/protocol.md lists the checks in order; each vector named "... first" / "X before Y" proves one.
    doc = (Path(__file__).resolve().parent.parent / "docs" / "protocol.md").read_text()
    steps = doc.split("### Decoding a line", 1)[1].split("\n## ", 1)[0]
    order = re.findall(r"else\s+`(\w+)`", steps)
    assert order == ["bad_frame", "bad_frame", "bad_crc", "bad_frame", "bad_frame", "bad_type", "too_long", "bad_json"]
    names = {c["name"] for c in VECTORS["decode"]}
    for name in ("wrong CRC on an unknown type: the CRC is checked first",
                 "unknown type with a bad sequence number: SEQ before TYPE",
                 "unknown type with a payload too long: TYPE before length",
                 "payload too long and not JSON: length before JSON"):
        assert name in names
