"""Run under MicroPython: the firmware's wire codec against docs/protocol_vectors.json.

    micropython tests/firmware_vectors.py VECTORS_JSON FIRMWARE_DIR

Prints one line per failing vector and ``vectors ok: N`` when all pass (exit status 1 otherwise).
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
print("vectors ok: %d" % count if not failures else "vectors failed: %d of %d" % (len(failures), count))
sys.exit(1 if failures else 0)
