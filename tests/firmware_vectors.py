"""Run under MicroPython: the firmware's wire codec against docs/protocol_vectors.json.

    micropython tests/firmware_vectors.py VECTORS_JSON FIRMWARE_DIR

Prints one line per failing vector, then ``gateway-section vectors ok: G`` and ``vectors ok: N``
(decode and encode) when all pass (exit status 1 otherwise).
The encode bodies are taken from the vectors file's own text, because MicroPython's json.load
does not keep key order and the firmware encodes JSON text, never a dict.
"""

import json
import sys
from binascii import hexlify, unhexlify

path, firmware = sys.argv[1], sys.argv[2]
sys.path.insert(0, firmware)
from counterguard_node import wire  # noqa: E402

with open(path) as f:
    text = f.read()
vectors = json.loads(text)
failures = []
count = 0


def as_plain(item):
    if isinstance(item, wire.Frame):
        return {"type": item.type, "seq": item.seq, "body": item.body}
    return {"error": item.code, "seq": item.seq}


for case in vectors["decode"]:
    count += 1
    decoder = wire.FrameDecoder()
    got = [as_plain(x) for x in decoder.feed(unhexlify(case["wire_hex"]))]
    if got != case["expect"]:
        failures.append("decode %r: got %r, expected %r" % (case["name"], got, case["expect"]))
    # Fed one byte at a time, the decoder must give the same result.
    decoder = wire.FrameDecoder()
    got = []
    for b in unhexlify(case["wire_hex"]):
        got += [as_plain(x) for x in decoder.feed(bytes((b,)))]
    if got != case["expect"]:
        failures.append("decode %r byte by byte: got %r" % (case["name"], got))

# The gateway section: the decoder's half of the gateway's answer. A bad_json event is refused by
# the decoder and, as a terminal line, by event_payload; an event_id the gateway refuses is refused
# by event_id_problem, which the node applies to every terminal line.
gateway_count = 0
for case in vectors["gateway"]:
    gateway_count += 1
    answer = case["answer"]
    items = wire.FrameDecoder().feed(unhexlify(case["wire_hex"]))
    if answer.get("code") == "bad_json":
        if [as_plain(x) for x in items] != [{"error": "bad_json", "seq": answer["seq"]}]:
            failures.append("gateway %r: got %r" % (case["name"], items))
        line = unhexlify(case["wire_hex"])
        line = line[line.index(b" ", 5) + 1:line.rindex(b"*")]
        try:
            wire.event_payload(line)
            failures.append("gateway %r: event_payload took the line" % case["name"])
        except wire.WireError as exc:
            if exc.code != "bad_json":
                failures.append("gateway %r: event_payload said %r" % (case["name"], exc.code))
        continue
    if len(items) != 1 or not isinstance(items[0], wire.Frame):
        failures.append("gateway %r: got %r" % (case["name"], items))
        continue
    problem = wire.event_id_problem(items[0].body.get("event_id"))
    if (problem is not None) != (answer.get("field") == "event_id"):
        failures.append("gateway %r: event_id_problem said %r" % (case["name"], problem))

encode_at = text.index('"encode"')
pos = encode_at
for case in vectors["encode"]:
    count += 1
    pos = text.index('"body"', pos)
    start = text.index(":", pos) + 1
    payload, pos = wire.compact(text, start)
    wire_bytes = wire.encode_frame(case["type"], case["seq"], payload)
    if hexlify(wire_bytes).decode() != case["wire_hex"]:
        failures.append("encode %r: got %r" % (case["name"], wire_bytes))
    if json.loads(payload) != case["body"]:
        failures.append("encode %r: payload %r does not read back as the body" % (case["name"], payload))

for line in failures:
    print(line)
if not failures:
    print("gateway-section vectors ok: %d" % gateway_count)
print("vectors ok: %d" % count if not failures else "vectors failed: %d of %d" % (len(failures), count))
sys.exit(1 if failures else 0)
