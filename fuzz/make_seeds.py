#!/usr/bin/env python3
"""Writes the seed corpora in corpus/<target>/ from the core's unit-test cases.

Run from fuzz/: python3 make_seeds.py. Signatures are computed here with Python's hmac,
independently of the crate, with the secrets and clock the targets use.
"""
import hashlib
import hmac
import os
import struct

NOW = 1717250400
CURRENT = b"whsec_fuzz_current_0123456789abcdef"
PREVIOUS = b"whsec_fuzz_previous_fedcba9876543210"
ENVELOPE_SECRET = b"whsec_fuzz_envelope_0123456789abcdef"
SIG = "5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd"


def sign(secret, body, t):
    return hmac.new(secret, b"%d." % t + body, hashlib.sha256).hexdigest()


HEADERS = [
    f"t=1717250400,v1={SIG}",
    f"v1={'A' * 64}, t=5 ,v1={SIG}",
    f"t=1,v0=zz,v1={SIG},v2=whatever",
    "",
    "   ",
    f"t=18446744073709551616,v1={SIG}",
    f"t=18446744073709551615,v1={SIG}",
    f"t=-1,v1={SIG}",
    f"t=1e9,v1={SIG}",
    f"t=1,v1={SIG[:63]}",
    f"t=1,v1=abc,v1={SIG}",
    f"v1={SIG}",
    "t=1",
    f"t=1,t=2,v1={SIG}",
    f"t=1,,v1={SIG}",
    f"t=1;v1={SIG}",
    f"t=1,={SIG}",
    "garbage",
    "t=1," + ",".join([f"v1={SIG}"] * 9),
    "t=1," + ",".join([f"v1={SIG}"] * 8),
]
HEADER_BYTES = [b"t=\xff,v1=00", b"\xc3\xa9=1", b"t=1,v1=\xe2\x82\xac", b"=", b","]

BODIES = [
    b'{"id":"del_1","eventId":"evt_1","type":"mapping.completed","apiVersion":"2026-06-01","createdAt":"2026-06-07T12:01:00Z","data":{"rowCount":1}}',
    b'{"id":"del_01HZ1A2B3C4D5E6F7G8H9J0K","eventId":"evt_01HZ","type":"mapping.completed","apiVersion":"2026-06-01","createdAt":"2026-06-07T12:01:00Z","data":{"mappingJobId":"job_01HZ","status":"COMPLETED","rowCount":4821,"exportFileId":"ef_01HZ"}}',
    b'{"type":"mapping.completed"}',
    b'{"eventId":42,"type":"x"}',
    b'{"eventId":"","type":"x"}',
    b'{"eventId":"e"}',
    b'{"eventId":"e","eventId":"f","type":"x"}',
    b'["eventId"]',
    b"",
    b"not json",
    b'{"eventId":"evt_\\u0031\\"x","type":"t"}',
    b'\xff\xfe{"eventId":1}',
    b'{"eventId":"e","type":"t","id":null,"data":[[[[[[[[[[]]]]]]]]]]}',
]


def write(target, name, data):
    os.makedirs(f"corpus/{target}", exist_ok=True)
    with open(f"corpus/{target}/{name}", "wb") as f:
        f.write(data)


for i, h in enumerate([h.encode() for h in HEADERS] + HEADER_BYTES):
    write("header", f"seed-{i:02}", h)

for i, body in enumerate(BODIES):
    write("envelope", f"seed-{i:02}", body)
    # verify: u16 LE header length, header, body. A correct, a stale and a wrong one.
    for j, (secret, t) in enumerate([(CURRENT, NOW), (PREVIOUS, NOW - 60), (CURRENT, NOW - 301)]):
        header = f"t={t},v1={sign(secret, body, t)}".encode()
        write("verify", f"seed-{i:02}-{j}", struct.pack("<H", len(header)) + header + body)
    # verify_signed: flags, i16 LE skew, body.
    for j, (flags, skew) in enumerate([(0, 0), (2 | 4 | 16, -300), (3 | 8 | 32, 301)]):
        write("verify_signed", f"seed-{i:02}-{j}", bytes([flags]) + struct.pack("<h", skew) + body)

for i, h in enumerate(HEADERS[:6]):
    body = BODIES[0]
    header = h.encode()
    write("verify", f"header-{i:02}", struct.pack("<H", len(header)) + header + body)

# Regression seeds for findings, kept so every fuzz run replays them.
# The header cap was bypassed by the sender's exact form with `t` padded with zeros.
write("header", "regression-zero-padded-t", f"t={'0' * 3000}{NOW},v1={'ab' * 32}".encode())

# The scheme head targets: each header's value (0xff between them; a lone 0xfe leaves
# the header out), then the body. Signed as each provider signs, with the targets'
# secret (whsec_ and base64: decoded for Standard Webhooks, raw for the others).
import base64

SCHEME_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
RAW = SCHEME_SECRET.encode()
DECODED = base64.b64decode(SCHEME_SECRET[len("whsec_"):])


def mac(key, data):
    return hmac.new(key, data, hashlib.sha256).digest()


def scheme_seed(target, name, values, body):
    parts = [b"\xfe" if v is None else v.encode() for v in values]
    write(target, name, b"\xff".join(parts + [body]))


for i, body in enumerate(BODIES):
    sid = f"msg_{i}"
    v1 = base64.b64encode(mac(DECODED, f"{sid}.{NOW}.".encode() + body)).decode()
    scheme_seed("scheme_standard", f"seed-{i:02}", [sid, str(NOW), f"v1,{v1}"], body)
    scheme_seed("scheme_standard", f"seed-{i:02}-two", [sid, str(NOW), f"v1,{'A' * 43}= v1a,{'B' * 86}== v1,{v1}"], body)
    scheme_seed("scheme_standard", f"seed-{i:02}-stale", [sid, str(NOW - 301), f"v1,{v1}"], body)
    hub = mac(RAW, body).hex()
    scheme_seed("scheme_github", f"seed-{i:02}", [f"sha256={hub}", f"72d3162e-{i}", "push"], body)
    scheme_seed("scheme_github", f"seed-{i:02}-nodelivery", [f"sha256={hub}", None, None], body)
    shop = base64.b64encode(mac(RAW, body)).decode()
    scheme_seed("scheme_shopify", f"seed-{i:02}", [shop, f"evt-{i}", "orders/create", f"wh-{i}"], body)
    slack_body = b'{"event_id":"Ev%d","type":"event_callback"}' % i
    v0 = mac(RAW, f"v0:{NOW}:".encode() + slack_body).hex()
    scheme_seed("scheme_slack", f"seed-{i:02}", [f"v0={v0}", str(NOW)], slack_body)
    scheme_seed("scheme_slack", f"seed-{i:02}-future", [f"v0={v0}", str(NOW + 301)], slack_body)
