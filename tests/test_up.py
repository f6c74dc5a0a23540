"""The README's run command end to end: `gbg up` ingests, starts the bot and the UI on embedded
defaults, both answer, and a stop signal takes both down."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import httpx
import pytest

from gbg.settings import Settings
from tests.helpers import CORPORA, PYTHON, REPO, free_port

pytestmark = pytest.mark.slow


def wait_for(url: str, deadline: float) -> httpx.Response:
    while True:
        try:
            r = httpx.get(url, timeout=5)
            if r.status_code == 200:
                return r
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{url} never answered"
        time.sleep(0.5)


def test_gbg_up_runs_bot_and_ui_and_stops_both(bundled_store: Settings) -> None:
    bot_port, ui_port = free_port(), free_port()
    env = {**os.environ, "GBG_DATA_DIR": str(bundled_store.data_dir),
           "GBG_CORPORA_DIR": str(CORPORA), "GBG_BOT__RATE_PER_ADDRESS": "off"}
    proc = subprocess.Popen(
        [PYTHON, "-m", "gbg", "up", "--port", str(bot_port), "--ui-port", str(ui_port)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 240
        wait_for(f"http://127.0.0.1:{bot_port}/readyz", deadline)
        wait_for(f"http://127.0.0.1:{ui_port}/_stcore/health", deadline)
        r = httpx.post(f"http://127.0.0.1:{bot_port}/v1/chat", timeout=60, json={
            "messages": [{"role": "user", "content": "Var ligger Feskekôrka?"}]})
        assert r.status_code == 200
        body = r.json()
        assert not body["refused"] and body["citations"] and body["provider"] == "extractive"
        page = httpx.get(f"http://127.0.0.1:{ui_port}/", timeout=10)
        assert page.status_code == 200 and "<html" in page.text.lower()

        proc.send_signal(signal.SIGTERM)  # what a service manager sends
        assert proc.wait(timeout=60) == 0
        for port in (bot_port, ui_port):
            with pytest.raises(httpx.ConnectError):
                httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        out = proc.stdout.read() if proc.stdout else ""
        if proc.stdout:
            proc.stdout.close()
    assert f"ui: http://127.0.0.1:{ui_port}" in out, out[-2000:]
