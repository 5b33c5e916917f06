#!/usr/bin/env python3
# Draws docs/observability.svg from the samples run.py scraped: four panels of the
# Grafana dashboard's queries, computed from the real counters.
import json, sys, re

samples = json.load(open(sys.argv[1]))
OUT = sys.argv[2]

def get(s, name, **labels):
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    total = 0.0
    for key, v in s["series"].items():
        m = re.match(r"([a-z_]+)(?:\{(.*)\})?$", key)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += v
    return total

def rate(name, **labels):
    pts = []
    for a, b in zip(samples, samples[1:]):
        dt = b["t"] - a["t"]
        pts.append(((a["t"] + b["t"]) / 2, (get(b, name, **labels) - get(a, name, **labels)) / dt))
    return pts

def quantile(q, name):
    pts = []
    for a, b in zip(samples, samples[1:]):
        buckets = {}
        for key, v in b["series"].items():
            m = re.match(name + r'_bucket\{le="([^"]+)"\}$', key)
            if m:
                le = float("inf") if m.group(1) == "+Inf" else float(m.group(1))
                buckets[le] = v - a["series"].get(key, 0.0)
        les = sorted(buckets)
        total = buckets[les[-1]]
        if total <= 0:
            continue
        rank, prev_le, prev_c = q * total, 0.0, 0.0
        for le in les:
            c = buckets[le]
            if c >= rank:
                if le == float("inf"):
                    le = prev_le
                val = prev_le + (le - prev_le) * ((rank - prev_c) / max(c - prev_c, 1e-9))
                pts.append(((a["t"] + b["t"]) / 2, val * 1e6))
                break
            prev_le, prev_c = le, c
    return pts

def cumulative(name):
    return [(s["t"], get(s, name)) for s in samples]

COLORS = ["#2f7ed8", "#e4572e", "#76b041", "#a05cc4", "#f0a202"]
W, H = 1000, 560
PW, PH = 470, 230
panels = [
    ("Requests by outcome (req/s)", [
        ("processed", rate("mapping_webhooks_requests_total", outcome="processed")),
        ("duplicate", rate("mapping_webhooks_requests_total", outcome="duplicate")),
        ("refused", rate("mapping_webhooks_requests_total", outcome="refused")),
        ("handler_failed", rate("mapping_webhooks_requests_total", outcome="handler_failed")),
    ]),
    ("Refusals by reason (req/s)", [
        ("signature_mismatch", rate("mapping_webhooks_requests_total", outcome="refused", reason="signature_mismatch")),
        ("timestamp_too_old", rate("mapping_webhooks_requests_total", outcome="refused", reason="timestamp_too_old")),
        ("malformed_header", rate("mapping_webhooks_requests_total", outcome="refused", reason="malformed_header")),
    ]),
    ("Verification duration (µs)", [
        ("p50", quantile(0.5, "mapping_webhooks_verification_duration_seconds")),
        ("p99", quantile(0.99, "mapping_webhooks_verification_duration_seconds")),
    ]),
    ("Previous-secret matches (total)", [
        ("previous_secret_matches_total", cumulative("mapping_webhooks_previous_secret_matches_total")),
    ]),
]
out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
       f'<rect width="{W}" height="{H}" fill="#111217"/>']
for i, (title, lines) in enumerate(panels):
    x0 = 20 + (i % 2) * (PW + 20)
    y0 = 20 + (i // 2) * (PH + 40)
    out.append(f'<rect x="{x0}" y="{y0}" width="{PW}" height="{PH + 20}" fill="#181b1f" stroke="#2c3235"/>')
    out.append(f'<text x="{x0 + 10}" y="{y0 + 18}" fill="#ccccdc" font-weight="bold">{title}</text>')
    ymax = max([v for _, pts in lines for _, v in pts] + [1e-9]) * 1.1
    tmax = 60.0
    gx, gy, gw, gh = x0 + 45, y0 + 30, PW - 60, PH - 45
    for k in range(5):
        yy = gy + gh - gh * k / 4
        out.append(f'<line x1="{gx}" y1="{yy:.1f}" x2="{gx + gw}" y2="{yy:.1f}" stroke="#2c3235"/>')
        out.append(f'<text x="{gx - 6}" y="{yy + 4:.1f}" fill="#8e8e8e" text-anchor="end">{ymax * k / 4:.3g}</text>')
    for sec in range(0, 61, 10):
        xx = gx + gw * sec / tmax
        out.append(f'<text x="{xx:.1f}" y="{gy + gh + 15}" fill="#8e8e8e" text-anchor="middle">{sec}s</text>')
    lx = gx
    for j, (label, pts) in enumerate(lines):
        if not pts:
            continue
        path = " ".join(f"{gx + gw * t / tmax:.1f},{gy + gh - gh * v / ymax:.1f}" for t, v in pts)
        out.append(f'<polyline points="{path}" fill="none" stroke="{COLORS[j]}" stroke-width="2"/>')
        out.append(f'<rect x="{lx}" y="{y0 + PH + 2}" width="10" height="10" fill="{COLORS[j]}"/>')
        out.append(f'<text x="{lx + 14}" y="{y0 + PH + 11}" fill="#ccccdc">{label}</text>')
        lx += 14 + 7 * len(label) + 16
out.append("</svg>")
open(OUT, "w").write("\n".join(out) + "\n")
