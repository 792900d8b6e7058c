#!/usr/bin/env python3
"""Serving benchmark: `sluice serve` on the quickstart bundle under 1, 4 and 16 concurrent clients.

Run from the repository root:

    python3 bench/serve.py                      # runs the quickstart first if it has no bundle
    python3 bench/serve.py --bundle deployments/support-bot/v-0123456789ab --duration 20

A closed-loop load generator (standard library threads and http.client; each client sends its next
request when the previous one is answered) posts `/v1/completions` requests — questions from the
bundled dataset, rendered with the bundle's prompt template, greedy, `max_tokens` 32 — for
`--duration` seconds per level, and reads every response's `usage.completion_tokens`. It reports
requests/s, p50 / p99 latency, generated tokens/s and errors (503s past the queue bound count as
errors) per level, as one Markdown table, printed and written to bench/results/serve-<date>.md.
The server runs with `--concurrency` generations at once (default: the number of cores).
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import engine  # noqa: E402
from engine import BenchError, log  # noqa: E402

BENCH = engine.BENCH
REPO = engine.REPO


def quickstart_bundle(sluice: Path, base: Path, timeout: float) -> Path:
    ws = base / "quickstart"
    ws.mkdir()
    (ws / ".sluice").mkdir()
    for d in ("pipelines", "data", "scripts"):
        shutil.copytree(REPO / d, ws / d)
    for lock in (ws / "pipelines").glob("*.lock"):
        lock.unlink()
    log("running the quickstart for a bundle (about a minute) …")
    r = engine.run_cmd([str(sluice), "run", "pipelines/quickstart.yaml"], ws, timeout=timeout)
    log(f"quickstart: {r.seconds:.0f} s")
    bundles = sorted((ws / "deployments").glob("*/v-*"))
    if not bundles:
        raise BenchError("the quickstart deployed no bundle")
    return bundles[-1]


def prompts(bundle: Path, n: int) -> list[str]:
    info = json.loads((bundle / "sluice.json").read_text())
    template = info.get("template", {}).get("prompt", "{input}")
    out = []
    for f in sorted((REPO / "data" / "support").glob("*.jsonl")):
        for line in f.read_text().splitlines():
            out.append(template.replace("{input}", json.loads(line)["question"]))
            if len(out) >= n:
                return out
    return out


def start_server(sluice: Path, bundle: Path, concurrency: int) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [str(sluice), "serve", str(bundle), "--port", "0", "--concurrency", str(concurrency),
         "--queue", "256"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        line = proc.stderr.readline()
        if not line:
            if proc.poll() is not None:
                raise BenchError("sluice serve exited before listening")
            continue
        m = re.search(r"listening on http://[^:]+:(\d+)", line)
        if m:
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return proc, int(m.group(1))
    proc.kill()
    raise BenchError("sluice serve did not start listening within 120 s")


def load(port: int, model: str, texts: list[str], clients: int, duration: float, max_tokens: int) -> dict:
    latencies: list[float] = []
    tokens = [0]
    errors = [0]
    lock = threading.Lock()
    stop = time.perf_counter() + duration

    def client(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        i = k
        while time.perf_counter() < stop:
            body = json.dumps({"model": model, "prompt": texts[i % len(texts)],
                               "max_tokens": max_tokens, "temperature": 0})
            i += clients
            t0 = time.perf_counter()
            try:
                conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                data = resp.read()
                ok = resp.status == 200
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                ok, data = False, b""
            elapsed = time.perf_counter() - t0
            with lock:
                if ok:
                    latencies.append(elapsed)
                    tokens[0] += json.loads(data)["usage"]["completion_tokens"]
                else:
                    errors[0] += 1
        conn.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] if latencies else float("nan")

    return {
        "clients": clients,
        "requests": len(latencies),
        "rps": len(latencies) / wall,
        "p50": pct(0.50),
        "p99": pct(0.99),
        "tokens_per_s": tokens[0] / wall,
        "errors": errors[0],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", type=Path)
    p.add_argument("--clients", default="1,4,16")
    p.add_argument("--duration", type=float, default=15.0)
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--concurrency", type=int, default=os.cpu_count() or 1)
    p.add_argument("--timeout", type=float, default=900)
    p.add_argument("--results", type=Path)
    a = p.parse_args()
    base = BENCH / "work" / f"serve-{dt.datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}"
    base.mkdir(parents=True)
    server = None
    try:
        sluice, version, rev = engine.ensure_sluice(base, a.timeout)
        bundle = a.bundle.resolve() if a.bundle else quickstart_bundle(sluice, base, a.timeout)
        texts = prompts(bundle, 500)
        server, port = start_server(sluice, bundle, a.concurrency)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/v1/models")
        model = json.loads(conn.getresponse().read())["data"][0]["id"]
        conn.close()
        load(port, model, texts, 1, 2.0, a.max_tokens)  # warm-up
        rows = []
        for c in [int(x) for x in a.clients.split(",")]:
            log(f"{c} clients for {a.duration:.0f} s …")
            rows.append(load(port, model, texts, c, a.duration, a.max_tokens))
        lines = [
            f"# Serving benchmark, {dt.date.today()}",
            "",
            f"`sluice serve` on `{model}` (--concurrency {a.concurrency}); POST /v1/completions, greedy, "
            f"max_tokens {a.max_tokens}; closed loop, {a.duration:.0f} s per level.",
            "",
            "| clients | requests | requests/s | p50 | p99 | generated tokens/s | errors |",
            "|--:|--:|--:|--:|--:|--:|--:|",
        ]
        for r in rows:
            lines.append(f"| {r['clients']} | {r['requests']} | {r['rps']:.1f} | {r['p50'] * 1000:.0f} ms | "
                         f"{r['p99'] * 1000:.0f} ms | {r['tokens_per_s']:,.0f} | {r['errors']} |")
        lines += ["", f"sluice {version} ({rev}); {os.cpu_count()} cores; load average "
                  f"{os.getloadavg()[0]:.2f} at the end."]
        text = "\n".join(lines) + "\n"
        print(text)
        out = a.results or (BENCH / "results" / f"serve-{dt.date.today()}.md")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        log(f"written to {out}")
    except BenchError as e:
        log(f"bench/serve.py: {e}")
        return 1
    finally:
        if server is not None and server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
