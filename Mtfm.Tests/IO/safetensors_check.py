#!/usr/bin/env python3
"""Independent safetensors checker (standard library only), written from the format description, not from the
engine's code. Usage: safetensors_check.py FILE EXPECTED.json

EXPECTED.json: {"tensors": {name: {"dtype": "F32"|"I32"|"I64", "shape": [..], "values": [..]}}, "metadata": {k: v}}
F32 values are given as uint32 bit patterns so comparisons are exact. Checks: header length, JSON, 8-byte alignment of
the data section, offsets contiguous and covering the data, shapes, values, and the per-tensor SHA-256 records
(metadata key "mtfm.sha256.<name>"). Prints OK and exits 0, or prints the problem and exits 1."""
import hashlib, json, struct, sys

SIZES = {"F32": 4, "I32": 4, "I64": 8}
FORMATS = {"F32": "I", "I32": "i", "I64": "q"}  # F32 read as raw uint32 bits


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def main():
    path, expected_path = sys.argv[1], sys.argv[2]
    with open(path, "rb") as f:
        blob = f.read()
    with open(expected_path, "r", encoding="utf-8") as f:
        expected = json.load(f)
    if len(blob) < 8:
        fail("file shorter than 8 bytes")
    (n,) = struct.unpack("<Q", blob[:8])
    if 8 + n > len(blob):
        fail("header runs past end of file")
    if (8 + n) % 8 != 0:
        fail("data section not 8-byte aligned: header length %d" % n)
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    data = blob[8 + n:]
    meta = header.pop("__metadata__", {})
    for k, v in expected.get("metadata", {}).items():
        if meta.get(k) != v:
            fail("metadata %r differs: %r" % (k, meta.get(k)))
    spans = sorted((e["data_offsets"][0], e["data_offsets"][1], name) for name, e in header.items())
    pos = 0
    for b, e, name in spans:
        if b != pos:
            fail("tensor %s begins at %d, expected %d" % (name, b, pos))
        pos = e
    if pos != len(data):
        fail("tensors cover %d bytes, data section has %d" % (pos, len(data)))
    if set(header) != set(expected["tensors"]):
        fail("tensor names %s != expected %s" % (sorted(header), sorted(expected["tensors"])))
    for name, want in expected["tensors"].items():
        e = header[name]
        if e["dtype"] != want["dtype"]:
            fail("%s dtype %s != %s" % (name, e["dtype"], want["dtype"]))
        if list(e["shape"]) != list(want["shape"]):
            fail("%s shape %s != %s" % (name, e["shape"], want["shape"]))
        b, end = e["data_offsets"]
        raw = data[b:end]
        if b % SIZES[e["dtype"]] != 0:
            fail("%s offset %d not aligned to its element size" % (name, b))
        count = 1
        for d in e["shape"]:
            count *= d
        if len(raw) != count * SIZES[e["dtype"]]:
            fail("%s byte length %d != %d" % (name, len(raw), count * SIZES[e["dtype"]]))
        values = list(struct.unpack("<%d%s" % (count, FORMATS[e["dtype"]]), raw))
        if values != want["values"]:
            fail("%s values differ" % name)
        digest = hashlib.sha256(raw).hexdigest()
        if meta.get("mtfm.sha256." + name) != digest:
            fail("%s sha256 %s != recorded %s" % (name, digest, meta.get("mtfm.sha256." + name)))
    print("OK %d tensors" % len(header))


if __name__ == "__main__":
    main()
