#!/usr/bin/env python3
"""Computes the signature test vectors in vectors.json with Python's standard `hmac`
module, independently of the Rust code under test.

Each vector: the secret (used as the raw UTF-8 bytes of the string, `whsec_` prefix
included), the timestamp `t`, the body (as hex, so any bytes fit), and the header the
sender would send: `t=<t>,v1=<hex(HMAC-SHA256(secret, "<t>." + body))>`.

Run: python3 core/tests/vectors/make_vectors.py > core/tests/vectors/vectors.json
Cross-check one with openssl:
  printf '%s' "1717250400.{...body...}" | openssl dgst -sha256 -hmac "whsec_..."
"""
import hashlib
import hmac
import json

CASES = [
    ("whsec_e1c5d3a0b2f4c6d8e0f2a4b6c8d0e2f4a6b83a0e", 1717250400,
     b'{"id":"del_01HZ1A2B3C4D5E6F7G8H9J0K","eventId":"evt_01HZ","type":"mapping.completed",'
     b'"apiVersion":"2026-06-01","createdAt":"2026-06-07T12:01:00Z","data":{"mappingJobId":'
     b'"job_01HZ","status":"COMPLETED","rowCount":4821,"exportFileId":"ef_01HZ"}}'),
    ("whsec_test", 0, b""),
    ("whsec_test", 1, b"{}"),
    ("a", 9999999999, b"x"),
    ("whsec_unicode_\u00e9\u20ac", 1717250400, "{\"eventId\":\"\u00e9v\u00e9nement\"}".encode()),
    ("whsec_bytes", 1717250400, bytes(range(256))),
    ("whsec_" + "k" * 100, 1800000000, b'{"eventId":"evt_long_key"}' * 50),
]

vectors = []
for secret, t, body in CASES:
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    vectors.append({"secret": secret, "t": t, "body_hex": body.hex(),
                    "header": f"t={t},v1={mac}"})
print(json.dumps(vectors, indent=2))
