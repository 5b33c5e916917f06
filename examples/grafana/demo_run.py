#!/usr/bin/env python3
# Drives the axum example receiver for 60 s with a known mix, scrapes /metrics every 2 s,
# and writes the samples as JSON (for docs/observability.svg).
import hmac, hashlib, json, os, socket, subprocess, sys, threading, time, random

BIN = sys.argv[1]
OUT = sys.argv[2]
CUR = "whsec_observability_demo_current_0123456789"
PREV = "whsec_observability_demo_previous_0123456789"
ADDR = ("127.0.0.1", 38911)
MADDR = ("127.0.0.1", 38912)

def sign(secret, body, t):
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"

def post(body, sig):
    s = socket.create_connection(ADDR, timeout=10)
    req = (f"POST /hooks/mapping HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\n"
           f"x-webhook-signature: {sig}\r\ncontent-length: {len(body)}\r\n\r\n").encode() + body
    s.sendall(req)
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    s.close()
    return int(data[9:12])

def scrape():
    s = socket.create_connection(MADDR, timeout=10)
    s.sendall(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    text = data.split(b"\r\n\r\n", 1)[1].decode()
    series = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        k, v = line.rsplit(" ", 1)
        series[k] = float(v)
    return series

env = dict(os.environ, MAPPING_WEBHOOK_SECRET=CUR, MAPPING_WEBHOOK_SECRET_PREVIOUS=PREV,
           BIND_ADDR=f"{ADDR[0]}:{ADDR[1]}", METRICS_ADDR=f"{MADDR[0]}:{MADDR[1]}", RUST_LOG="error")
proc = subprocess.Popen([BIN], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    for _ in range(200):
        try:
            socket.create_connection(MADDR, timeout=1).close(); break
        except OSError:
            time.sleep(0.05)
    samples = []
    start = time.time()
    n = 0
    random.seed(7)
    done = []
    stop = threading.Event()
    def scraper():
        while not stop.is_set():
            samples.append({"t": time.time() - start, "series": scrape()})
            time.sleep(2)
    th = threading.Thread(target=scraper); th.start()
    while time.time() - start < 60:
        el = time.time() - start
        n += 1
        body = json.dumps({"id": f"del_{n}", "eventId": f"evt_demo_{n}", "type": "mapping.completed", "data": {}}).encode()
        now = int(time.time())
        # The rotation: until 25 s, a third of the deliveries still carry only the old secret.
        secret = PREV if el < 25 and n % 3 == 0 else CUR
        # 35-45 s: a misconfigured replica signs with a wrong secret.
        if 35 <= el < 45 and n % 2 == 0:
            secret = "whsec_wrong"
        post(body, sign(secret, body, now))
        if n % 5 == 0:
            post(body, sign(CUR, body, now))  # a retry of a processed event
        if n % 17 == 0:
            post(body, sign(CUR, body, now - 400))  # stale
        if n % 29 == 0:
            post(body, "t=soon")  # malformed
        time.sleep(0.04)
    stop.set(); th.join()
    samples.append({"t": time.time() - start, "series": scrape()})
    json.dump(samples, open(OUT, "w"))
    print(len(samples), "samples,", n, "deliveries")
finally:
    proc.kill(); proc.wait()
