#!/usr/bin/env python3
"""Training benchmark: sluice's `train` stage against an equivalent PyTorch script, on the CPU.

Run from the repository root:

    python3 bench/train.py            # hidden 256, 4 layers, seq 256, batch 8; 30 steps, 3 reps
    python3 bench/train.py --quick    # 10 steps, 1 rep

Both train the same llama-style model (bench/train_torch.py is the PyTorch side: RMSNorm, rotary
embeddings, multi-head attention, SwiGLU, tied embeddings, float32, AdamW, clipping at norm 1)
for the same number of optimizer steps on batches of the same shape, every sequence exactly
`seq` tokens. sluice runs a two-stage workflow (`collect` a text corpus, `train` from `init`);
its tokens/s is the `tokens_per_s` metric the stage records (median over steps after the
first), so tokenizer training and data loading are not counted; PyTorch's is measured the same
way in its script. Peak memory is each whole process's ru_maxrss from wait4.

PyTorch goes into a reused virtualenv at bench/.venv-torch (`pip install torch`: from PyPI it
brings about 2.8 GB of CUDA wheels, which still run on the CPU). Both use every core unless
--threads is given. One Markdown table of medians, printed and written to
bench/results/train-<date>.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import engine  # noqa: E402
from engine import BenchError, log  # noqa: E402

BENCH = engine.BENCH
REPO = engine.REPO
VENV = BENCH / ".venv-torch"
VENV_PY = VENV / "bin" / "python"
TORCH_SCRIPT = BENCH / "train_torch.py"
TARGET = 0.5  # sluice tokens/s at least half of PyTorch's


def ensure_torch(timeout: float) -> str:
    if not VENV_PY.exists():
        log(f"creating {VENV} …")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    probe = subprocess.run([str(VENV_PY), "-c", "import torch; print(torch.__version__)"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        log("pip install torch (about 2.8 GB from PyPI; once) …")
        subprocess.run([str(VENV_PY), "-m", "pip", "install", "-q", "torch", "numpy"],
                       check=True, timeout=timeout)
        probe = subprocess.run([str(VENV_PY), "-c", "import torch; print(torch.__version__)"],
                               capture_output=True, text=True, check=True)
    return probe.stdout.strip()


def run_measured(cmd: list[str], cwd: Path, timeout: float) -> tuple[float, int, str]:
    """Runs `cmd`; returns (seconds, peak RSS in bytes, stdout)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        deadline = t0 + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                os.killpg(proc.pid, 9)
                raise BenchError(f"timed out: {' '.join(cmd)}")
            time.sleep(0.05)
        seconds = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            tail = "\n".join((stdout + stderr).strip().splitlines()[-25:])
            raise BenchError(f"command failed (exit {code}): {' '.join(cmd)}\n{tail}")
        return seconds, usage.ru_maxrss * 1024, stdout


def corpus(path: Path, rows: int) -> None:
    """Lines of random words, each long enough to fill `seq` tokens after truncation."""
    rng = random.Random(7)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
             for _ in range(3000)]
    with path.open("w") as f:
        for _ in range(rows):
            f.write(" ".join(rng.choice(words) for _ in range(600)) + "\n")


def workflow(a) -> str:
    return f"""version: 1
name: bench
stages:
  corpus:
    uses: collect
    with:
      sources:
        - path: corpus.txt
  train:
    uses: train
    with:
      base: {{init: {{arch: llama, hidden: {a.hidden}, layers: {a.layers}, heads: {a.heads}, vocab: {a.vocab}, seq: {a.seq}}}}}
      data: ${{{{ stages.corpus.outputs.data }}}}
      loss: all
      max_steps: {a.steps}
      batch_size: {a.batch}
      seq_len: {a.seq}
      overflow: truncate
      lr: 0.0003
"""


def bench_sluice(sluice: Path, base: Path, rep: int, a) -> dict:
    ws = base / f"sluice-{rep}"
    ws.mkdir(parents=True)
    (ws / ".sluice").mkdir()
    corpus(ws / "corpus.txt", max(64, a.batch * a.steps))
    (ws / "bench.yaml").write_text(workflow(a))
    env_threads = []
    if a.threads:
        env_threads = ["env", f"RAYON_NUM_THREADS={a.threads}"]
    seconds, rss, stdout = run_measured(env_threads + [str(sluice), "run", "bench.yaml", "--json"], ws, a.timeout)
    lock = (ws / "bench.lock").read_text()
    import re
    m = re.search(r"tokens_per_s:\s*([0-9.eE+-]+)", lock)
    if not m:
        raise BenchError(f"no tokens_per_s in {ws / 'bench.lock'}")
    return {"tokens_per_s": float(m.group(1)), "rss": rss, "seconds": seconds}


def bench_torch(rep: int, a) -> dict:
    cmd = [str(VENV_PY), str(TORCH_SCRIPT), "--hidden", str(a.hidden), "--layers", str(a.layers),
           "--heads", str(a.heads), "--vocab", str(a.vocab), "--seq", str(a.seq), "--batch",
           str(a.batch), "--steps", str(a.steps)]
    if a.threads:
        cmd += ["--threads", str(a.threads)]
    seconds, rss, stdout = run_measured(cmd, REPO, a.timeout)
    doc = json.loads(stdout.strip().splitlines()[-1])
    return {"tokens_per_s": doc["tokens_per_s"], "rss": rss, "seconds": seconds, "doc": doc}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--vocab", type=int, default=2048)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--results", type=Path)
    a = p.parse_args()
    if a.quick:
        a.steps, a.reps = 10, 1
    torch_version = ensure_torch(a.timeout)
    base = BENCH / "work" / f"train-{dt.datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}"
    base.mkdir(parents=True)
    try:
        sluice, version, rev = engine.ensure_sluice(base, a.timeout)
        runs: dict[str, list[dict]] = {"sluice": [], "pytorch": []}
        for rep in range(a.reps):
            # Alternate, so that a noisy neighbour hurts both alike.
            log(f"rep {rep + 1}/{a.reps}: sluice …")
            runs["sluice"].append(bench_sluice(sluice, base, rep, a))
            log(f"  {runs['sluice'][-1]['tokens_per_s']:.0f} tok/s; pytorch …")
            runs["pytorch"].append(bench_torch(rep, a))
            log(f"  {runs['pytorch'][-1]['tokens_per_s']:.0f} tok/s")
        med = {k: {m: statistics.median(r[m] for r in v) for m in ("tokens_per_s", "rss", "seconds")}
               for k, v in runs.items()}
        ratio = med["sluice"]["tokens_per_s"] / med["pytorch"]["tokens_per_s"]
        lines = [
            f"# Training benchmark, {dt.date.today()}",
            "",
            f"llama: hidden {a.hidden}, {a.layers} layers, {a.heads} heads, vocab {a.vocab}, seq {a.seq}, "
            f"batch {a.batch}; {a.steps} AdamW steps; float32 on the CPU; medians of {a.reps} reps.",
            "",
            "| tool | tokens/s | peak memory | wall (whole run) |",
            "|---|--:|--:|--:|",
        ]
        for k in ("sluice", "pytorch"):
            m = med[k]
            lines.append(f"| {k} | {m['tokens_per_s']:,.0f} | {m['rss'] / 2**20:,.0f} MiB | {m['seconds']:.1f} s |")
        lines += [
            "",
            f"sluice / PyTorch tokens/s: **{ratio:.2f}×** (target ≥ {TARGET}×: {'met' if ratio >= TARGET else 'missed'}).",
            "",
            f"sluice {version} ({rev}); torch {torch_version} ({runs['pytorch'][0]['doc']['threads']} threads); "
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; load average "
            f"{os.getloadavg()[0]:.2f} at the end.",
            "",
            "Every rep: " + "; ".join(
                f"{k} " + ", ".join(f"{r['tokens_per_s']:.0f}" for r in v) for k, v in runs.items()),
        ]
        text = "\n".join(lines) + "\n"
        print(text)
        out = a.results or (BENCH / "results" / f"train-{dt.date.today()}.md")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        log(f"written to {out}")
    except BenchError as e:
        log(f"bench/train.py: {e}")
        return 1
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
