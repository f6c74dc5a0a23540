"""Load test of POST /v1/chat: N concurrent simulated users against a bot on this machine.

    python bench/load.py [--users 50] [--duration 60] [--workers 2] [--stream] [--json]
    python bench/load.py --url http://127.0.0.1:8000 [--users 20]     # a bot already running

Without --url it builds its own stack on loopback and removes it afterwards: a `chroma run`
server on a free port with its data in a temporary folder, the bundled corpora ingested into it
(`gbg ingest`), then `gbg serve --workers W` pointed at that server with the extractive provider
only and the per-key and per-address rate limits switched off (a load test from one address
would otherwise measure the limiter). It waits for /readyz on every worker and sends a few
warm-up requests before measuring.

Each user loops until the duration is over: one question from a fixed list of Swedish and English
questions a visitor or resident might ask, then --think-s of pause. An error is a non-2xx answer
or a transport failure (refused, reset, timeout), counted by kind. Printed: requests completed,
requests/s, latency p50/p95/p99 of the successful ones (with --stream also the time to the first
token), errors by kind and the bot's peak RSS (VmHWM) summed over its processes.

Only loopback targets are accepted: this tool is for measuring a bot on this machine, never for
sending load to somebody else's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
LOOPBACK = {"127.0.0.1", "localhost", "::1"}

QUESTIONS = [
    # Swedish: visitors
    "Hur tar jag mig från Landvetter flygplats till centrum?",
    "Vad kostar en dagsbiljett på spårvagnen?",
    "När har Liseberg öppet på sommaren?",
    "Kan man åka färja ut i södra skärgården utan extra biljett?",
    "Var kan jag köpa färsk fisk och skaldjur i Göteborg?",
    "Vad finns att se på Götaplatsen?",
    "Hur kommer jag till Nya Älvsborgs fästning?",
    "Får man tälta i naturen enligt allemansrätten?",
    "Vilka evenemang är det i Göteborg under julen?",
    "Var finns turistinformationen?",
    "Var kan man fika och äta kanelbullar i Haga?",
    "Vilken utsikt har man från Ramberget?",
    # Swedish: residents
    "Hur ansöker jag om parkeringstillstånd för rörelsehindrade?",
    "När töms soptunnan och hur sorterar jag matavfall?",
    "Var lämnar jag farligt avfall som färgrester och batterier?",
    "Hur ansöker jag om förskoleplats till mitt barn?",
    "Vad kostar hemtjänst för en pensionär?",
    "Hur söker jag bygglov för en altan?",
    "Hur får jag färdtjänst?",
    "Vilka öppettider har återvinningscentralerna?",
    "Hur kontaktar jag Göteborgs Stad?",
    # English: visitors
    "How do I get from Landvetter Airport to the city centre?",
    "What does the Gothenburg City Card include?",
    "Can I rent a city bike with Styr & Ställ?",
    "Which festivals take place in Gothenburg in the summer?",
    "How do I buy a tram ticket in Gothenburg?",
    "What is there to do at Universeum?",
    "Where can I eat good seafood on the west coast?",
    "What should I wear in Gothenburg in November?",
    "Is Liseberg accessible for wheelchair users?",
    "How do I get to the southern archipelago?",
    "Where is the opera house in Gothenburg?",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def check_loopback(url: str) -> str:
    """The URL without a trailing slash, or SystemExit when its host is not this machine."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        print(f"--url {url!r}: give an http(s) URL such as http://127.0.0.1:8000", file=sys.stderr)
        raise SystemExit(2)
    if parts.hostname.lower() not in LOOPBACK:
        print(f"--url {url!r}: refusing a non-loopback host ({parts.hostname}); this tool only "
              "sends load to 127.0.0.1, localhost or ::1", file=sys.stderr)
        raise SystemExit(2)
    return url.rstrip("/")


# --- the stack under test (only without --url) ------------------------------------------------


class Stack:
    """A chroma server, the ingested corpora and `gbg serve`, all in one temporary folder."""

    def __init__(self, workers: int, data_dir: Path | None, corpora: list[str]) -> None:
        self.workers = workers
        self.corpora = corpora
        self.keep = data_dir is not None
        self.root = data_dir.resolve() if data_dir else Path(tempfile.mkdtemp(prefix="gbg-load-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.chroma_port = free_port()
        self.bot_port = free_port()
        self.chroma: subprocess.Popen[bytes] | None = None
        self.bot: subprocess.Popen[bytes] | None = None
        self._logs: list[Any] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.bot_port}"

    def _log(self, name: str) -> Any:
        f = open(self.root / name, "ab")  # noqa: SIM115 - closed in stop()
        self._logs.append(f)
        return f

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "ANONYMIZED_TELEMETRY": "False",
            "GBG_CHROMA__HOST": "127.0.0.1",
            "GBG_CHROMA__PORT": str(self.chroma_port),
            "GBG_DATA_DIR": str(self.root / "data"),
            "GBG_CORPORA_DIR": str(REPO / "corpora"),
        }

    def start_chroma(self, timeout: float = 90) -> None:
        exe = shutil.which("chroma") or str(Path(sys.executable).parent / "chroma")
        self.chroma = subprocess.Popen(
            [exe, "run", "--path", str(self.root / "chroma"), "--host", "127.0.0.1",
             "--port", str(self.chroma_port)],
            stdout=self._log("chroma.log"), stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.chroma.poll() is not None:
                raise RuntimeError(f"chroma run exited with {self.chroma.returncode}; see "
                                   f"{self.root / 'chroma.log'}")
            with contextlib.suppress(httpx.HTTPError):
                url = f"http://127.0.0.1:{self.chroma_port}/api/v2/heartbeat"
                if httpx.get(url, timeout=1).status_code == 200:
                    return
            time.sleep(0.2)
        raise TimeoutError("chroma run did not answer its heartbeat")

    def ingest(self) -> dict[str, Any]:
        res = subprocess.run(
            [sys.executable, "-m", "gbg", "ingest", "--json", *self.corpora],
            env=self._env(), cwd=REPO, capture_output=True, text=True, timeout=3600,
        )
        if res.returncode != 0:
            raise RuntimeError(f"gbg ingest failed ({res.returncode}):\n{res.stderr[-3000:]}")
        summary: dict[str, Any] = json.loads(res.stdout)
        return summary

    def start_bot(self, timeout: float = 300) -> None:
        env = {
            **self._env(),
            "OMP_NUM_THREADS": "1",
            "GBG_LLM__PROVIDERS": json.dumps({"extractive": {"kind": "extractive"}}),
            "GBG_LLM__PREFERENCE": json.dumps(["extractive"]),
            "GBG_BOT__RATE_PER_ADDRESS": "off",
            "GBG_BOT__RATE_PER_KEY": "off",
        }
        self.bot = subprocess.Popen(
            [sys.executable, "-m", "gbg", "serve", "--port", str(self.bot_port),
             "--workers", str(self.workers)],
            env=env, cwd=REPO, stdout=self._log("bot.log"), stderr=subprocess.STDOUT,
        )
        wait_ready(self.url, timeout, lambda: self.bot is not None and self.bot.poll() is None,
                   need=max(4, 3 * self.workers))

    def stop(self) -> None:
        for proc, grace in ((self.bot, 30.0), (self.chroma, 20.0)):
            if proc is None:
                continue
            try:
                family = psutil.Process(proc.pid).children(recursive=True)
            except psutil.Error:
                family = []
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
            for child in family:  # workers the supervisor did not reap
                with contextlib.suppress(psutil.Error):
                    child.kill()
        for f in self._logs:
            f.close()
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)


def wait_ready(url: str, timeout: float, alive: Any = lambda: True, need: int = 4) -> None:
    """/readyz 200 ``need`` times in a row, each on a new connection, so that every worker
    (each builds its service on first use) has answered."""
    deadline = time.monotonic() + timeout
    streak = 0
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError("the bot exited while starting")
        try:
            ok = httpx.get(f"{url}/readyz", timeout=60).status_code == 200
        except httpx.HTTPError:
            ok = False
        streak = streak + 1 if ok else 0
        if streak >= need:
            return
        if not ok:
            time.sleep(0.5)
    raise TimeoutError(f"{url}/readyz did not answer 200 {need} times in a row")


# --- peak memory -------------------------------------------------------------------------------


def vm_hwm_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def bot_processes(root_pid: int | None, port: int | None) -> list[psutil.Process]:
    """The bot's processes: the `gbg serve` process and its descendants when we started it,
    otherwise whatever listens on the port (uvicorn's parent and workers all hold the socket)
    and their descendants."""
    roots: list[psutil.Process] = []
    if root_pid is not None:
        with contextlib.suppress(psutil.Error):
            roots.append(psutil.Process(root_pid))
    elif port is not None:

        def listens(p: psutil.Process) -> bool:
            try:
                return any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
                           for c in p.net_connections(kind="tcp"))
            except psutil.Error:
                return False

        with contextlib.suppress(psutil.Error):
            for c in psutil.net_connections(kind="tcp"):
                if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid:
                    p = psutil.Process(c.pid)
                    # A shared socket is reported for one of its holders: climb to the
                    # supervisor that holds it too (uvicorn's parent of the workers).
                    while (parent := p.parent()) is not None and listens(parent):
                        p = parent
                    roots.append(p)
    seen: dict[int, psutil.Process] = {}
    for p in roots:
        seen[p.pid] = p
        with contextlib.suppress(psutil.Error):
            for child in p.children(recursive=True):
                seen[child.pid] = child
    return list(seen.values())


# --- the simulated users -----------------------------------------------------------------------


@dataclass
class Sample:
    started: float
    latency_ms: float
    outcome: str  # "ok" or an error kind: "http_503", "timeout", "connect", ...
    ttft_ms: float | None = None


@dataclass
class Run:
    samples: list[Sample] = field(default_factory=list)
    started: float = 0.0
    ended: float = 0.0


def _error_kind(exc: BaseException) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.ConnectError):
        return "connect"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "protocol"
    return f"transport:{type(exc).__name__}"


async def one_request(client: httpx.AsyncClient, url: str, question: str, stream: bool) -> Sample:
    body = {"messages": [{"role": "user", "content": question}], "stream": stream}
    t0 = time.perf_counter()
    ttft = None
    try:
        if not stream:
            r = await client.post(f"{url}/v1/chat", json=body)
            outcome = "ok" if 200 <= r.status_code < 300 else f"http_{r.status_code}"
        else:
            async with client.stream("POST", f"{url}/v1/chat", json=body) as r:
                if not 200 <= r.status_code < 300:
                    await r.aread()
                    outcome = f"http_{r.status_code}"
                else:
                    final = False
                    async for line in r.aiter_lines():
                        if line == "event: token" and ttft is None:
                            ttft = (time.perf_counter() - t0) * 1000
                        elif line == "event: final":
                            final = True
                    outcome = "ok" if final else "stream_incomplete"
    except httpx.HTTPError as exc:
        outcome = _error_kind(exc)
    return Sample(t0, (time.perf_counter() - t0) * 1000, outcome, ttft)


async def user(i: int, client: httpx.AsyncClient, url: str, run: Run, deadline: float,
               think_s: float, stream: bool, seed: int) -> None:
    rng = random.Random(seed * 1000 + i)
    # Spread the first requests over the first second, as real users do not arrive in lockstep.
    await asyncio.sleep(rng.random())
    while time.perf_counter() < deadline:
        run.samples.append(await one_request(client, url, rng.choice(QUESTIONS), stream))
        if think_s > 0:
            await asyncio.sleep(rng.uniform(0.5, 1.5) * think_s)


async def load(url: str, users: int, duration: float, think_s: float, stream: bool,
               timeout: float, seed: int, warmup: int) -> Run:
    limits = httpx.Limits(max_connections=users + 8, max_keepalive_connections=users + 8)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        if warmup:  # first chat per worker builds its BM25 index: not part of the measurement
            await asyncio.gather(*(one_request(client, url, QUESTIONS[i % len(QUESTIONS)], stream)
                                   for i in range(warmup)))
        run = Run(started=time.perf_counter())
        deadline = run.started + duration
        await asyncio.gather(*(user(i, client, url, run, deadline, think_s, stream, seed)
                               for i in range(users)))
        run.ended = time.perf_counter()
    return run


# --- report ------------------------------------------------------------------------------------


def summarise(run: Run, args: argparse.Namespace, workers: int | None, rss_mb: float | None,
              procs: int, setup: dict[str, Any]) -> dict[str, Any]:
    elapsed = max(run.ended - run.started, 1e-9)
    ok = [s for s in run.samples if s.outcome == "ok"]
    errors = Counter(s.outcome for s in run.samples if s.outcome != "ok")
    lat = np.array([s.latency_ms for s in ok]) if ok else np.array([float("nan")])
    ttfts = [s.ttft_ms for s in ok if s.ttft_ms is not None]
    out: dict[str, Any] = {
        "users": args.users,
        "duration_s": args.duration,
        "elapsed_s": round(elapsed, 1),
        "think_s": args.think_s,
        "workers": workers,
        "stream": args.stream,
        "requests": len(run.samples),
        "completed_ok": len(ok),
        "requests_per_s": round(len(ok) / elapsed, 2),
        "latency_ms": {f"p{q}": round(float(np.percentile(lat, q)), 1) for q in (50, 95, 99)}
        | {"max": round(float(lat.max()), 1)},
        "errors": {"total": sum(errors.values()), **dict(sorted(errors.items()))},
        "bot_peak_rss_mb": None if rss_mb is None else round(rss_mb, 1),
        "bot_processes": procs,
        **setup,
    }
    if args.stream:
        t = np.array(ttfts) if ttfts else np.array([float("nan")])
        out["ttft_ms"] = {f"p{q}": round(float(np.percentile(t, q)), 1) for q in (50, 95, 99)}
        out["ttft_n"] = len(ttfts)
    return out


def print_summary(s: dict[str, Any]) -> None:
    lat = s["latency_ms"]
    print(f"target           {s['target']}")
    if s.get("setup"):
        print(f"setup            {s['setup']}")
    print(f"users            {s['users']} (think time {s['think_s']} s)")
    print(f"duration         {s['duration_s']} s requested, {s['elapsed_s']} s measured")
    print(f"workers          {s['workers'] if s['workers'] is not None else 'unknown'}")
    print(f"mode             {'SSE stream' if s['stream'] else 'JSON'}")
    print(f"requests         {s['requests']} sent, {s['completed_ok']} completed with 2xx")
    print(f"throughput       {s['requests_per_s']} requests/s")
    print(f"latency ms       p50 {lat['p50']:.0f}  p95 {lat['p95']:.0f}  p99 {lat['p99']:.0f}  "
          f"max {lat['max']:.0f}  (2xx only)")
    if "ttft_ms" in s:
        t = s["ttft_ms"]
        print(f"first token ms   p50 {t['p50']:.0f}  p95 {t['p95']:.0f}  p99 {t['p99']:.0f}  "
              f"({s['ttft_n']} answers with tokens; refusals have none)")
    errs = {k: v for k, v in s["errors"].items() if k != "total"}
    detail = ", ".join(f"{k} {v}" for k, v in errs.items())
    print(f"errors           {s['errors']['total']}" + (f" ({detail})" if detail else ""))
    rss = s["bot_peak_rss_mb"]
    print("bot peak RSS     " + (f"{rss:.0f} MB (VmHWM summed over {s['bot_processes']} "
                                 "processes; shared pages count once per process)"
                                 if rss is not None else "unknown (bot process not found)"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--users", type=int, default=50, help="Concurrent simulated users.")
    ap.add_argument("--duration", type=float, default=60.0, help="Seconds of load.")
    ap.add_argument("--think-s", type=float, default=0.0,
                    help="Mean pause of a user between answers (0: none).")
    ap.add_argument("--workers", type=int, default=2, help="`gbg serve --workers` (own stack).")
    ap.add_argument("--stream", action="store_true",
                    help="Ask for SSE and measure the time to the first token.")
    ap.add_argument("--url", help="A bot already running on loopback: no setup, no teardown.")
    ap.add_argument("--timeout", type=float, default=30.0, help="Per request, seconds.")
    ap.add_argument("--warmup", type=int, default=None,
                    help="Requests before measuring (default: 4 per worker).")
    ap.add_argument("--corpus", action="append", default=None,
                    help="Ingest only this corpus (repeatable; default: all bundled corpora).")
    ap.add_argument("--data-dir", type=Path, default=None,
                    help="Keep the Chroma data here (re-runs then skip the embedding) instead "
                    "of a temporary folder that is removed.")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", action="store_true", help="Print the summary as JSON.")
    args = ap.parse_args()
    if args.users < 1 or args.duration <= 0 or args.timeout <= 0 or args.workers < 1:
        ap.error("--users, --duration, --timeout and --workers must be positive")

    def say(msg: str) -> None:
        print(msg, file=sys.stderr if args.json else sys.stdout, flush=True)

    # SIGTERM (and Ctrl-C, SIGINT) end the run through the same cleanup.
    def _stop(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)  # also when started with SIGINT ignored (a `cmd &`)

    stack: Stack | None = None
    setup: dict[str, Any] = {}
    try:
        if args.url:
            url = check_loopback(args.url)
            workers = None
            port = urlsplit(url).port or (443 if url.startswith("https") else 80)
            root_pid = None
            setup["target"] = f"{url} (already running)"
            wait_ready(url, 30, need=4)
        else:
            stack = Stack(args.workers, args.data_dir, args.corpus or [])
            workers = args.workers
            say(f"stack in {stack.root}: chroma run on 127.0.0.1:{stack.chroma_port}")
            stack.start_chroma()
            t = time.perf_counter()
            summary = stack.ingest()
            chunks = sum(c["chunks_total"] for c in summary["corpora"])
            ingest_s = time.perf_counter() - t
            say(f"ingested {len(summary['corpora'])} corpora, {chunks} chunks in {ingest_s:.0f} s")
            t = time.perf_counter()
            stack.start_bot()
            say(f"gbg serve --workers {args.workers} on {stack.url} ready in "
                f"{time.perf_counter() - t:.0f} s")
            url, port, root_pid = stack.url, stack.bot_port, stack.bot.pid if stack.bot else None
            setup.update({
                "target": f"{url} (own stack)",
                "setup": f"chroma run + {chunks} chunks of {len(summary['corpora'])} corpora, "
                         "extractive provider, rate limits per key and per address OFF",
                "chunks": chunks,
                "ingest_s": round(ingest_s, 1),
            })
        warmup = args.warmup if args.warmup is not None else 4 * (workers or 1)
        say(f"load: {args.users} users for {args.duration:.0f} s"
            f"{' (SSE)' if args.stream else ''} after {warmup} warm-up requests ...")
        run = asyncio.run(load(url, args.users, args.duration, args.think_s, args.stream,
                               args.timeout, args.seed, warmup))
        procs = bot_processes(root_pid, port)
        rss_kb = sum(vm_hwm_kb(p.pid) for p in procs)
        s = summarise(run, args, workers, rss_kb / 1024 if procs else None, len(procs), setup)
    except KeyboardInterrupt:
        say("interrupted; cleaning up")
        return 130
    except (RuntimeError, TimeoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if stack is not None:
            stack.stop()
    if args.json:
        sys.stdout.write(json.dumps(s, ensure_ascii=False) + "\n")
    else:
        print_summary(s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
