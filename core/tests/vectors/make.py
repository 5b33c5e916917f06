#!/usr/bin/env python3
"""Interop vectors for the other senders' schemes, made by each provider's own library.

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install \
        standardwebhooks==1.1.0 svix==2.9.1 stripe==16.1.0 slack_sdk==3.48.0 cryptography
    /tmp/venv/bin/python core/tests/vectors/make.py            # writes schemes.json
    /tmp/venv/bin/python core/tests/vectors/make.py --check core/tests/vectors/ours.json

Without arguments it writes `schemes.json` (next to this script): for each scheme,
deliveries signed by the provider's official library (`standardwebhooks`, `svix`,
`stripe`, `slack_sdk`), GitHub's documented example, Shopify's documented verification
(HMAC-SHA256 of the raw body, base64), and Standard Webhooks `v1a` (ed25519, which no
provider library signs yet) with `cryptography`. `core/tests/scheme_vectors.rs` checks
that our verifier accepts each of them, and refuses each once a byte is changed.

With `--check FILE` it verifies a file of OUR signatures (`ours.json`, written by
`MAKE_VECTORS=1 cargo test -p mapping-webhooks --test scheme_vectors`) with those same
libraries, and exits non-zero if any is refused. The Rust test checks that our signer
still writes exactly that file, so CI needs no Python.
"""

import base64
import hashlib
import hmac
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import standardwebhooks
import stripe
import svix.webhooks
from slack_sdk.signature import SignatureVerifier

HERE = Path(__file__).resolve().parent

STANDARD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SVIX_SECRET = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
STRIPE_SECRET = "whsec_test_secret_0123456789abcdef"
SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
SHOPIFY_SECRET = "hush_shopify_app_client_secret_42"
# GitHub's documented example (docs: "Validating webhook deliveries", "Testing the
# webhook payload validation").
GITHUB_SECRET = "It's a Secret to Everybody"
GITHUB_BODY = "Hello, World!"
GITHUB_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

TIMESTAMPS = [1_614_265_330, 1_717_250_400, 1_767_225_600]
BODIES = [
    '{"type":"invoice.paid","data":{"id":"in_1"}}',
    '{"test": 2432232314}',
    '{"type":"user.created","data":{"name":"Zo\u00eb \\"Z\\" \u00c5berg","tags":["a","b"]}}',
]


def when(t):
    return datetime.fromtimestamp(t, tz=timezone.utc)


class Clock:
    """slack_sdk's clock, fixed at the vector's time."""

    def __init__(self, t):
        self.t = t

    def now(self):
        return float(self.t)


def standard_like(module_webhook, secret, scheme, prefix):
    out = []
    wh = module_webhook(secret)
    for i, (t, body) in enumerate(zip(TIMESTAMPS, BODIES)):
        msg_id = f"msg_{scheme}_{i}"
        signature = wh.sign(msg_id=msg_id, timestamp=when(t), data=body)
        out.append(
            {
                "scheme": scheme,
                "secret": secret,
                "t": t,
                "body": body,
                "headers": {
                    f"{prefix}-id": msg_id,
                    f"{prefix}-timestamp": str(t),
                    f"{prefix}-signature": signature,
                },
                "id": msg_id,
            }
        )
    return out


def stripe_vectors():
    out = []
    for i, (t, body) in enumerate(zip(TIMESTAMPS, BODIES)):
        body = json.dumps({"id": f"evt_{i}", "object": "event", "type": "charge.succeeded"})
        signature = stripe.WebhookSignature._compute_signature(f"{t}.{body}", STRIPE_SECRET)
        # Stripe sends a v0 (test-mode legacy) beside v1: ignored.
        header = f"t={t},v1={signature},v0={'0' * 64}"
        stripe.WebhookSignature.verify_header(body, header, STRIPE_SECRET, tolerance=None)
        out.append(
            {
                "scheme": "stripe",
                "secret": STRIPE_SECRET,
                "t": t,
                "body": body,
                "headers": {"stripe-signature": header},
                "id": f"evt_{i}",
            }
        )
    return out


def slack_vectors():
    out = []
    for i, t in enumerate(TIMESTAMPS):
        body = json.dumps({"token": "x", "event_id": f"Ev{i:08d}", "type": "event_callback", "event": {"type": "app_mention"}})
        verifier = SignatureVerifier(SLACK_SECRET, clock=Clock(t))
        signature = verifier.generate_signature(timestamp=str(t), body=body)
        assert verifier.is_valid(body=body, timestamp=str(t), signature=signature)
        out.append(
            {
                "scheme": "slack",
                "secret": SLACK_SECRET,
                "t": t,
                "body": body,
                "headers": {"x-slack-signature": signature, "x-slack-request-timestamp": str(t)},
                "id": f"Ev{i:08d}",
            }
        )
    return out


def github_vectors():
    digest = hmac.new(GITHUB_SECRET.encode(), GITHUB_BODY.encode(), hashlib.sha256).hexdigest()
    assert "sha256=" + digest == GITHUB_SIGNATURE, "GitHub's documented example"
    return [
        {
            "scheme": "github",
            "secret": GITHUB_SECRET,
            "t": TIMESTAMPS[0],
            "body": GITHUB_BODY,
            "headers": {
                "x-hub-signature-256": GITHUB_SIGNATURE,
                "x-github-delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
                "x-github-event": "ping",
            },
            "id": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        }
    ]


def shopify_signature(secret, body):
    # Shopify's documented verification: base64 of HMAC-SHA256 of the raw body, keyed
    # with the app's client secret.
    return base64.b64encode(hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest()).decode()


def shopify_vectors():
    out = []
    for i, body in enumerate(BODIES):
        out.append(
            {
                "scheme": "shopify",
                "secret": SHOPIFY_SECRET,
                "t": TIMESTAMPS[i],
                "body": body,
                "headers": {
                    "x-shopify-hmac-sha256": shopify_signature(SHOPIFY_SECRET, body),
                    "x-shopify-event-id": f"98880550-7158-44d4-b7cd-2c97c8a091b{i}",
                    "x-shopify-topic": "orders/create",
                },
                "id": f"98880550-7158-44d4-b7cd-2c97c8a091b{i}",
            }
        )
    return out


def ed25519_vectors():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    whpk = "whpk_" + base64.b64encode(public).decode()
    out = []
    for i, (t, body) in enumerate(zip(TIMESTAMPS, BODIES)):
        msg_id = f"msg_v1a_{i}"
        signature = key.sign(f"{msg_id}.{t}.{body}".encode())
        out.append(
            {
                "scheme": "standard",
                "secret": whpk,
                "t": t,
                "body": body,
                "headers": {
                    "webhook-id": msg_id,
                    "webhook-timestamp": str(t),
                    "webhook-signature": "v1a," + base64.b64encode(signature).decode(),
                },
                "id": msg_id,
                "ed25519": True,
            }
        )
    return out


def make():
    vectors = (
        standard_like(standardwebhooks.Webhook, STANDARD_SECRET, "standard", "webhook")
        + standard_like(svix.webhooks.Webhook, SVIX_SECRET, "svix", "svix")
        + stripe_vectors()
        + github_vectors()
        + shopify_vectors()
        + slack_vectors()
        + ed25519_vectors()
    )
    path = HERE / "schemes.json"
    path.write_text(json.dumps(vectors, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {len(vectors)} vectors to {path}")


def check(path):
    """Verifies our signatures with the providers' libraries."""
    ours = json.loads(Path(path).read_text())
    failures = 0
    for v in ours:
        scheme, secret, body, h, t = v["scheme"], v["secret"], v["body"], v["headers"], v["t"]
        try:
            if scheme in ("standard", "svix"):
                cls = standardwebhooks.Webhook if scheme == "standard" else svix.webhooks.Webhook
                wh = cls(secret)
                prefix = "webhook" if scheme == "standard" else "svix"
                # Their verify compares with the clock: check the signature their `sign`
                # makes for the same id, time and body against every entry of ours.
                theirs = wh.sign(msg_id=h[f"{prefix}-id"], timestamp=when(int(h[f"{prefix}-timestamp"])), data=body)
                assert theirs in h[f"{prefix}-signature"].split(" "), (theirs, h)
            elif scheme == "stripe":
                stripe.WebhookSignature.verify_header(body, h["stripe-signature"], secret, tolerance=None)
            elif scheme == "slack":
                verifier = SignatureVerifier(secret, clock=Clock(t))
                assert verifier.is_valid(body=body, timestamp=h["x-slack-request-timestamp"], signature=h["x-slack-signature"])
            elif scheme == "github":
                digest = hmac.new(secret.encode(), body.encode(), hashlib.sha256).hexdigest()
                assert hmac.compare_digest("sha256=" + digest, h["x-hub-signature-256"])
            elif scheme == "shopify":
                assert hmac.compare_digest(shopify_signature(secret, body), h["x-shopify-hmac-sha256"])
            else:
                raise AssertionError(f"unknown scheme {scheme}")
        except Exception as e:  # noqa: BLE001 - report every failure
            failures += 1
            print(f"REFUSED {scheme} {v.get('id')}: {e!r}")
    print(f"{len(ours) - failures} of {len(ours)} of our signatures verified by the providers' libraries")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        check(sys.argv[2])
    elif len(sys.argv) == 1:
        make()
    else:
        sys.exit(__doc__)
