#!/usr/bin/env python3
"""Data benchmark: sluice's builtin data stages against an equivalent pandas script, side by side.

Run from the repository root:

    python3 bench/data.py            # full run: 1,000,000 rows, 3 reps (about 10 minutes)
    python3 bench/data.py --quick    # smoke run: 100,000 rows, 1 rep, no load wait

It generates (once, seeded) a JSON Lines dataset of customer-support question/answer pairs under
bench/work/data/, with planted exact and normalised duplicates, stock tickers and too short / too
long rows; then, per repetition and in fresh directories, runs

- sluice: `collect` → `clean` (normalize, strip tickers, min/max chars, exact then normalised
  dedup) → `split` 80/10/10, one `sluice run --json` in a fresh workspace;
- pandas: bench/data_pandas.py, the same steps on the same file (bench/.venv's Python);

timing each whole command (wall) and taking its peak RSS (`wait4`'s ru_maxrss), and checks that
both kept the same rows at every step. Then MinHash near-dedup (`clean` with `near_dedup`) on a
100,000-row slice: rows per second from the stage's `duration_ms`, and, for reference, the same
with the `datasketch` library when it installs. One Markdown table of medians, printed and written
to bench/results/data-<date>.md. See bench/README.md.

Reuses bench/engine.py (sluice build and private copy, command runner, formatting). The driver is
Python 3.11 standard library only; pandas, pyarrow and datasketch go into bench/.venv.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import engine  # noqa: E402
from engine import BenchError, fmt_time, fmt_x, log, run_cmd  # noqa: E402

BENCH = engine.BENCH
REPO = engine.REPO
DATA = engine.DATA
VENV_PY = engine.VENV / "bin" / "python"
PANDAS_SCRIPT = BENCH / "data_pandas.py"
CORES = os.cpu_count() or 1

# Targets from the issue.
T_SPEEDUP = 5.0  # collect + clean + split: at least 5x faster than pandas

# The cleaning rules, the same on both sides.
PATTERN = r"\$[A-Z]{1,5}\b"
MIN_CHARS = 12
MAX_CHARS = 1500
SEED = 7
NEAR_THRESHOLD = 0.8

PY_PACKAGES = ["pandas>=2.2", "pyarrow>=15"]
DATASKETCH = "datasketch>=1.6"

GEN_VERSION = 1  # bump when the generator changes: the cached files are regenerated
GEN_SEED = 20261127


# --------------------------------------------------------------------------------------------
# The dataset: deterministic, and prefix-stable (the first N rows do not depend on the total),
# so the 100,000-row file is the first 100,000 rows of the 1,000,000-row one.

BRANDS = ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Stark", "Wayne", "Cyberdyne",
          "Soylent", "Tyrell", "Wonka", "Gringotts", "Oscorp", "Aperture", "Monarch", "Nakatomi",
          "Pendant", "Virtucon", "Zorg", "Massive", "Dunder", "Sterling", "Prestige"]
PRODUCTS = ["router", "smart plug", "thermostat", "doorbell camera", "mesh extender", "smart bulb",
            "security hub", "air purifier", "robot vacuum", "baby monitor", "smart lock", "speaker",
            "soundbar", "e-reader", "fitness tracker", "smartwatch", "dashcam", "projector",
            "coffee maker", "space heater", "dehumidifier", "garage opener", "water sensor",
            "smoke alarm", "light strip", "webcam", "keyboard", "game controller", "tablet",
            "power bank", "charging dock", "label printer", "scanner", "NAS drive", "modem",
            "ceiling fan", "sprinkler controller", "pet feeder", "kettle", "blender"]
INTENTS = [
    ("How do I reset my {p}?",
     "Hold the reset button on the {p} for {n} seconds until the light blinks, then set it up again in the app."),
    ("My {p} will not connect to Wi-Fi. What should I do?",
     "Make sure your network is 2.4 GHz, move the {p} closer to the router, and restart both devices."),
    ("How can I update the firmware on my {p}?",
     "Open the app, select the {p}, go to Settings > Firmware and tap Update. Keep it powered on until it finishes."),
    ("Is my {p} still under warranty?",
     "Every {p} has a {w}-year warranty from the date of purchase. Enter your serial number on the support page to check."),
    ("Can I return my {p}?",
     "Yes, you can return the {p} within {d} days. Start a return from your order history and print the free label."),
    ("Why is the light on my {p} blinking {c}?",
     "A blinking {c} light means the {p} lost its connection. Check your internet and restart the {p}."),
    ("How do I share access to my {p} with family?",
     "In the app, open the {p}, tap Share and enter the e-mail address of the person you want to invite."),
    ("The app says my {p} is offline.",
     "Unplug the {p} for {n} seconds, plug it back in and wait two minutes. If it stays offline, reconnect it to Wi-Fi."),
    ("What is the power consumption of the {p}?",
     "The {p} uses less than {n} W in normal operation and under 1 W on standby."),
    ("How do I change the name of my {p}?",
     "Open the app, select the {p}, tap the pencil icon next to its name and save the new name."),
    ("Does the {p} work with voice assistants?",
     "Yes: link your account in the assistant's app, then say the name you gave the {p}."),
    ("My {p} makes a strange noise.",
     "A faint hum is normal. A clicking or grinding {p} should be checked: send us a short video and your order number."),
    ("Can I use the {p} without an account?",
     "The {p} needs an account for the first setup; after that most features work offline for up to {d} days."),
    ("Where can I find the serial number of my {p}?",
     "The serial number is printed on a label under the {p} and in the app under Device info."),
    ("How long does the battery of the {p} last?",
     "On a full charge the {p} lasts about {n} hours; cold rooms and frequent updates shorten it."),
    ("The {p} keeps disconnecting every few hours.",
     "Give the {p} a fixed address in your router and turn off band steering; that fixes most drop-outs."),
    ("Can I mount the {p} on a wall?",
     "Yes, the {p} comes with a bracket and two screws; use wall plugs on plaster or brick."),
    ("How do I cancel my subscription for the {p}?",
     "Go to Account > Subscriptions, choose the {p} plan and tap Cancel; it stays active until the end of the period."),
    ("Is the {p} safe to use around children?",
     "The {p} meets the usual safety standards; keep small parts and cables out of reach of young children."),
    ("Why does my {p} show the wrong time?",
     "The {p} takes its time from the app. Check the time zone in Settings > General and sync again."),
]
OPENERS = ["", "", "", "Hi, ", "Hello! ", "Quick question: ", "Please help. ", "Hey team, ",
           "Good morning. ", "Sorry to bother you, ", "Urgent: ", "Hi there. "]
CLOSERS = ["", "", "", " Thanks!", " Thank you.", " Any ideas?", " I bought it last week.",
           " Cheers.", " It is a gift for my mother.", " Please reply soon."]
SUBJECTS = ["my partner", "the installer", "my neighbour", "our landlord", "my son", "the shop",
            "a friend", "my colleague", "the old unit", "the previous owner", "my daughter",
            "the electrician", "the courier", "my flatmate", "the technician", "our café owner"]
VERBS = ["set it up", "moved it", "unplugged it", "updated it", "reset it", "dropped it",
         "returned one", "configured it", "paired it", "cleaned it", "replaced the cable",
         "changed the password", "renamed it", "registered it", "tested it", "opened the box"]
WHENS = ["yesterday", "last night", "this morning", "on Monday", "on Friday", "two days ago",
         "last week", "after the update", "before the holidays", "during the storm",
         "after the move", "at the weekend", "an hour ago", "in March", "in the spring"]
WHERES = ["in the kitchen", "in the garage", "upstairs", "in the basement", "in the office",
          "in the hallway", "in the nursery", "on the balcony", "in the living room",
          "in the attic", "at my holiday flat", "in the shed", "by the window"]
EXTRAS = ["The manual did not help.", "I have tried twice already.", "The app is up to date.",
          "My internet works fine otherwise.", "It worked fine until now.", "I am on the latest firmware.",
          "Other devices are fine.", "The light stays {c}.", "I use the {b} app.", "My plan is the basic one.",
          "I am not very technical.", "This is my second {p}.", "I have a résumé of the error codes.",
          "The display shows error {e}.", "Support chat was closed.", "The box was damaged."]
TIPS = ["If that does not help, contact support with your order number.",
        "You can also find this in the online manual under Troubleshooting.",
        "Our community forum has a thread about this.",
        "Make sure the app is on the latest version first.",
        "A reboot of your router often helps too.",
        "Keep the {p} away from microwaves and thick walls.",
        "Error {e} usually means a weak signal.",
        "We are sorry for the trouble.",
        "Replacement parts for the {p} are in our shop.",
        "Please do not open the housing: it voids the warranty.",
        "Check that the {b} account is the one you registered with.",
        "The status page shows any outage in your area.",
        "If the {p} is older than {w} years, ask about our trade-in offer."]
COLORS = ["red", "orange", "blue", "green", "white", "purple", "yellow"]
TICKERS = ["$ACME", "$GLOBX", "$INIT", "$UMBR", "$WAYN", "$STRK", "$CYBD", "$HOOL", "$TYRL", "$OSCP"]
JUNK = ["?", "hi", "test", "asdf", "help", "hello?", "ok", "pls", "...", "thanks"]
DECOMPOSE = {"é": "e\u0301", "ï": "i\u0308"}  # NFD spellings that NFC composes again


def row_base(rng: random.Random) -> tuple[str, str]:
    q, a = rng.choice(INTENTS)
    brand = rng.choice(BRANDS)
    product = f"{brand} {rng.choice(PRODUCTS)}"
    model = f"{rng.choice('ABCDEFGHKLMNPRSTX')}{rng.randint(10, 999)}"
    if rng.random() < 0.5:
        product += f" {model}"
    fill = dict(p=product, n=rng.choice([5, 10, 15, 20, 30, 60]), w=rng.choice([1, 2, 3]),
                d=rng.choice([14, 30, 60, 90]), c=rng.choice(COLORS), b=brand,
                e=f"E{rng.randint(1, 99):02d}")
    question = rng.choice(OPENERS) + q.format(**fill)
    k = rng.random()
    if k < 0.8:
        question += (f" {rng.choice(SUBJECTS).capitalize()} {rng.choice(VERBS)} "
                     f"{rng.choice(WHENS)} {rng.choice(WHERES)}.")
    if k < 0.5 or k > 0.9:
        question += " " + rng.choice(EXTRAS).format(**fill)
    if rng.random() < 0.3:
        question += f" Order {rng.randint(100000, 999999)}."
    question += rng.choice(CLOSERS)
    answer = a.format(**fill)
    for _ in range(rng.choice([0, 1, 1, 2])):
        answer += " " + rng.choice(TIPS).format(**fill)
    if rng.random() < 0.2:
        answer += f" Reference: case {rng.randint(1000000, 9999999)}."
    # Noise for the rules to deal with.
    if rng.random() < 0.08:
        question += f" I also hold {rng.choice(TICKERS)} shares, does that matter?"
    if rng.random() < 0.04:
        answer += f" (Ticket mentioned {rng.choice(TICKERS)}.)"
    if rng.random() < 0.05:
        question = question.replace(" ", "  ", 2) + " "
    if rng.random() < 0.03:
        answer = answer.replace(". ", ".\n\n\n", 1)
    if rng.random() < 0.02:
        answer = answer.replace(", ", ",\t", 1)
    if rng.random() < 0.02:
        answer = answer.replace("\n", "\r\n")
    if rng.random() < 0.3:
        for c, d in DECOMPOSE.items():
            question = question.replace(c, d)
    return question, answer


def noisy(question: str, answer: str, rng: random.Random) -> tuple[str, str]:
    """The same pair written carelessly: case, punctuation, spacing (all equal after normalised
    dedup's folding; the spacing ones already after `normalize`)."""
    k = rng.randrange(6)
    if k == 0:
        return question.upper(), answer
    if k == 1:
        return question.lower(), answer.lower()
    if k == 2:
        return question.rstrip("?.!") + "!!", answer
    if k == 3:
        return question.replace(",", "").replace("?", " ?"), answer.replace(".", "")
    if k == 4:
        return question.replace("-", " - "), answer
    return "  " + question.replace(" ", "  ") + "  ", answer


def generate(path: Path, n: int) -> None:
    rng = random.Random(GEN_SEED)
    base: list[tuple[str, str]] = []
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for i in range(n):
            r = rng.random()
            if r < 0.05 and base:  # exact duplicate of an earlier row
                q, a = base[rng.randrange(len(base))]
            elif r < 0.10 and base:  # normalised duplicate
                q, a = noisy(*base[rng.randrange(len(base))], rng)
            elif r < 0.11:  # too short
                q, a = rng.choice(JUNK), rng.choice(["", "ok", "Sure.", "See above."])
                if rng.random() < 0.5:
                    q, a = row_base(rng)[0], rng.choice(["", "ok", "Done."])
            elif r < 0.12:  # too long
                q, a = row_base(rng)
                a = " ".join([a] + [rng.choice(TIPS).format(p="device", e="E01", b="Acme", w=2) for _ in range(30)])
            else:
                q, a = row_base(rng)
                base.append((q, a))
            f.write(json.dumps({"id": f"r{i:07d}", "question": q, "answer": a}, ensure_ascii=False))
            f.write("\n")
    os.replace(tmp, path)


def ensure_dataset(n: int) -> Path:
    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"qa-{n}.jsonl"
    mark = path.with_suffix(".ok")
    want = f"generator {GEN_VERSION}, seed {GEN_SEED}, rows {n}\n"
    if path.exists() and mark.exists() and mark.read_text() == want:
        return path
    log(f"generating {path.relative_to(REPO)} ({n:,} rows, once) …")
    t = time.perf_counter()
    generate(path, n)
    mark.write_text(want)
    old = time.time() - 3600  # an old mtime, as data files usually have
    os.utime(path, (old, old))
    log(f"  {path.stat().st_size / 1e6:.0f} MB in {time.perf_counter() - t:.0f} s")
    return path


# --------------------------------------------------------------------------------------------
# Tools


def ensure_venv(timeout: float, want_datasketch: bool) -> tuple[dict[str, str], bool]:
    """pandas + pyarrow (required) and datasketch (optional) in bench/.venv."""
    if not VENV_PY.exists():
        log("creating bench/.venv …")
        run_cmd([sys.executable, "-m", "venv", str(engine.VENV)], REPO, timeout=300)
    probe = (
        "import json, importlib.metadata as m\n"
        "out = {}\n"
        "for p in ('pandas', 'pyarrow', 'numpy', 'datasketch'):\n"
        "    try: out[p] = m.version(p)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))\n"
    )

    def versions() -> dict[str, str]:
        return json.loads(run_cmd([str(VENV_PY), "-c", probe], REPO, timeout=120).stdout)

    have = versions()
    pip = [str(VENV_PY), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    if "pandas" not in have or "pyarrow" not in have:
        log(f"pip install {' '.join(PY_PACKAGES)} into bench/.venv …")
        try:
            run_cmd(pip + PY_PACKAGES, REPO, timeout=timeout)
        except BenchError as e:
            raise BenchError(f"cannot install pandas and pyarrow into bench/.venv: {e}\n"
                             "  = hint: check access to PyPI") from e
        have = versions()
    ok_ds = "datasketch" in have
    if want_datasketch and not ok_ds:
        log(f"pip install {DATASKETCH} into bench/.venv (optional) …")
        try:
            run_cmd(pip + [DATASKETCH], REPO, timeout=timeout)
            have = versions()
            ok_ds = "datasketch" in have
        except BenchError as e:
            log(f"  datasketch does not install ({str(e).splitlines()[0]}): its reference row is skipped")
    return have, ok_ds and want_datasketch


# --------------------------------------------------------------------------------------------
# Running a command with its peak memory


@dataclass
class Measured:
    seconds: float
    stdout: str
    stderr: str
    maxrss: int  # bytes: peak resident set of the process and its waited-for descendants
    cpu: float  # seconds of CPU (user + system), the process and its waited-for descendants


def run_measured(cmd: list[str], cwd: Path, timeout: float, env: dict[str, str] | None = None) -> Measured:
    """Runs `cmd` (its own process group), timing it and taking its peak RSS from wait4."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        try:
            proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=err, text=True, start_new_session=True)
        except OSError as e:
            raise BenchError(f"cannot start {cmd[0]}: {e}") from e
        expired = threading.Event()

        def kill() -> None:
            expired.set()
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            kill()
            raise
        finally:
            timer.cancel()
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if expired.is_set():
        raise BenchError(f"timed out after {timeout:.0f} s: {' '.join(cmd)} (in {cwd})")
    if proc.returncode != 0:
        tail = "\n".join((stdout + stderr).strip().splitlines()[-25:])
        raise BenchError(f"command failed (exit {proc.returncode}): {' '.join(cmd)}\n  in {cwd}\n{tail}")
    return Measured(seconds, stdout, stderr, usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime)


# --------------------------------------------------------------------------------------------
# Workflows


def pipeline_yaml(src: str) -> str:
    return f"""version: 1
name: databench
stages:
  collect:
    uses: collect
    with:
      sources:
        - path: {src}
      fields: {{input: question, output: answer}}
  clean:
    uses: clean
    with:
      data: ${{{{ stages.collect.outputs.data }}}}
      strip: ['{PATTERN}']
      min_chars: {MIN_CHARS}
      max_chars: {MAX_CHARS}
      dedup: [exact, normalized]
  split:
    uses: split
    with:
      data: ${{{{ stages.clean.outputs.data }}}}
      ratios: {{train: 0.8, validation: 0.1, test: 0.1}}
      seed: {SEED}
"""


def minhash_yaml(src: str) -> str:
    return f"""version: 1
name: minhash
stages:
  collect:
    uses: collect
    with:
      sources:
        - path: {src}
      fields: {{input: question, output: answer}}
  near:
    uses: clean
    with:
      data: ${{{{ stages.collect.outputs.data }}}}
      normalize: false
      near_dedup: {{threshold: {NEAR_THRESHOLD}}}
"""


def sluice_workspace(base: Path, tag: str, data: Path, yaml: str) -> Path:
    ws = Path(tempfile.mkdtemp(prefix=f"{tag}-", dir=base))
    (ws / ".sluice").mkdir()  # its own workspace root, not the repository's
    (ws / "data").mkdir()
    os.link(data, ws / "data" / data.name)  # the same bytes, no copy
    (ws / "flow.yaml").write_text(yaml)
    return ws


def stage_stats(ws: Path) -> dict[str, dict]:
    """Every stats.json under the workspace (outside .sluice/), by the stage directory name."""
    found = {}
    for p in ws.rglob("stats.json"):
        rel = p.relative_to(ws)
        if rel.parts[0] == ".sluice":
            continue
        found[str(rel.parent)] = json.loads(p.read_text())
    return found


def rule(stats: dict, name: str, effect: str) -> int:
    for r in stats.get("rules", []):
        if r.get("rule") == name:
            return int(r.get(effect, 0))
    raise BenchError(f"no rule {name!r} in stats.json: {json.dumps(stats)[:500]}")


def find_stats(all_stats: dict[str, dict], stage: str) -> dict:
    for key, s in all_stats.items():
        if Path(key).name == stage or key.endswith(f"/{stage}") or key == stage:
            return s
    raise BenchError(f"no stats.json for stage {stage!r} (found {sorted(all_stats)})")


def sluice_counts(ws: Path) -> dict[str, int]:
    st = stage_stats(ws)
    col, cl, sp = (find_stats(st, s) for s in ("collect", "clean", "split"))
    filtered = int(cl["rows_in"]) - rule(cl, "min_chars", "removed") - rule(cl, "max_chars", "removed")
    return {
        "collect": int(col["rows_out"]),
        "normalize_changed": rule(cl, "normalize", "changed"),
        "strip_changed": rule(cl, "strip", "changed"),
        "min_chars_removed": rule(cl, "min_chars", "removed"),
        "max_chars_removed": rule(cl, "max_chars", "removed"),
        "after_filters": filtered,
        "dedup_exact_removed": rule(cl, "dedup_exact", "removed"),
        "after_exact": filtered - rule(cl, "dedup_exact", "removed"),
        "dedup_normalized_removed": rule(cl, "dedup_normalized", "removed"),
        "after_normalized": int(cl["rows_out"]),
        "train": int(sp["train"]["rows"]),
        "validation": int(sp["validation"]["rows"]),
        "test": int(sp["test"]["rows"]),
    }


def lock_durations(lock: Path) -> dict[str, int]:
    """Each stage's `duration-ms` from the lockfile: the stage's own work, without hashing its
    inputs and storing its outputs (which `--json`'s `duration_ms` includes)."""
    out, stage = {}, None
    for line in lock.read_text().splitlines():
        if line.startswith("  ") and not line.startswith("   ") and line.rstrip().endswith(":"):
            stage = line.strip()[:-1]
        elif stage and line.startswith("    duration-ms:"):
            out[stage] = int(line.split(":", 1)[1])
    return out


COUNT_LABELS = [
    ("collect", "rows collected"),
    ("normalize_changed", "rows changed by normalize (NFC + whitespace)"),
    ("strip_changed", "rows changed by strip (tickers)"),
    ("min_chars_removed", f"removed by min_chars {MIN_CHARS}"),
    ("max_chars_removed", f"removed by max_chars {MAX_CHARS}"),
    ("after_filters", "rows after the length filters"),
    ("dedup_exact_removed", "removed by exact dedup"),
    ("after_exact", "rows after exact dedup"),
    ("dedup_normalized_removed", "removed by normalised dedup"),
    ("after_normalized", "rows after normalised dedup"),
    ("train", "train rows"),
    ("validation", "validation rows"),
    ("test", "test rows"),
]


def sluice_run(sluice: Path, ws: Path, timeout: float) -> tuple[Measured, dict]:
    m = run_measured([str(sluice), "run", "flow.yaml", "--json"], ws, timeout)
    try:
        doc = json.loads(m.stdout)
    except json.JSONDecodeError as e:
        raise BenchError(f"sluice run --json printed no JSON ({e}) in {ws}:\n{m.stdout[:2000]}")
    if not doc.get("ok"):
        raise BenchError(f"sluice run failed in {ws}: {json.dumps(doc)[:2000]}")
    bad = [s["name"] for s in doc.get("stages", []) if s.get("status") != "ran"]
    if bad:
        raise BenchError(f"sanity check failed: stages {bad} did not run in a fresh workspace ({ws})")
    return m, doc


# --------------------------------------------------------------------------------------------
# Measurements


@dataclass
class Samples:
    values: dict[str, list[float]] = field(default_factory=dict)

    def add(self, key: str, v: float) -> None:
        self.values.setdefault(key, []).append(v)

    def med(self, key: str) -> float | None:
        v = self.values.get(key)
        return statistics.median(v) if v else None

    def all(self, key: str) -> list[float]:
        return self.values.get(key, [])


def bench_pipeline(sluice: Path, data: Path, base: Path, args) -> tuple[Samples, dict, dict, list[str]]:
    """Per repetition, sluice then pandas, each in a fresh directory; returns samples, the last
    counts of both sides and the notes on any count difference."""
    s = Samples()
    yaml = pipeline_yaml(f"data/{data.name}")
    sl_counts = pd_counts = {}
    pd_doc: dict = {}
    for rep in range(args.warmup + args.reps):
        # Warm-up repetitions run and are checked like the others, under their own keys.
        pre = "warmup " if rep < args.warmup else ""
        ws = sluice_workspace(base, "sluice", data, yaml)
        try:
            m, doc = sluice_run(sluice, ws, args.timeout)
            s.add(pre + "sluice wall", m.seconds)
            s.add(pre + "sluice rss", m.maxrss)
            s.add(pre + "sluice cpu", m.cpu)
            for st in doc["stages"]:
                s.add(f"{pre}sluice stage {st['name']}", st.get("duration_ms", 0) / 1000)
            s.add(pre + "sluice engine", m.seconds - sum(st.get("duration_ms", 0) for st in doc["stages"]) / 1000)
            for name, ms in lock_durations(ws / "flow.lock").items():
                s.add(f"{pre}sluice work {name}", ms / 1000)
            sl_counts = sluice_counts(ws)
        finally:
            if not args.keep:
                shutil.rmtree(ws, ignore_errors=True)
        out = Path(tempfile.mkdtemp(prefix="pandas-", dir=base))
        try:
            cmd = [str(VENV_PY), str(PANDAS_SCRIPT), str(data), str(out), "--min-chars", str(MIN_CHARS),
                   "--max-chars", str(MAX_CHARS), "--seed", str(SEED), "--pattern", PATTERN]
            pm = run_measured(cmd, base, args.timeout)
            pd_doc = json.loads(pm.stdout)
            pd_counts = pd_doc["counts"]
            s.add(pre + "pandas wall", pm.seconds)
            s.add(pre + "pandas rss", pm.maxrss)
            s.add(pre + "pandas cpu", pm.cpu)
            s.add(pre + "pandas import", pd_doc["import_s"])
            for k, v in pd_doc["steps"].items():
                s.add(f"{pre}pandas step {k}", v)
            for name in ("train", "validation", "test"):
                if not (out / f"{name}.parquet").is_file():
                    raise BenchError(f"sanity check failed: pandas wrote no {name}.parquet in {out}")
        finally:
            if not args.keep:
                shutil.rmtree(out, ignore_errors=True)
        load = os.getloadavg()[0]
        label = f"warm-up {rep + 1}/{args.warmup}" if pre else f"rep {rep + 1 - args.warmup}/{args.reps}"
        s.add(pre + "load", load)
        log(
            f"  [pipeline] {label}: sluice {fmt_time(m.seconds)} "
            f"({fmt_mb(m.maxrss)}; stages "
            + ", ".join(f"{st['name']} {st.get('duration_ms', 0)} ms" for st in doc["stages"])
            + f"), pandas {fmt_time(pm.seconds)} ({fmt_mb(pm.maxrss)}; import {pd_doc['import_s']:.2f} s)"
            f"; load {load:.2f}"
        )
    diffs = [
        f"{label}: sluice {sl_counts.get(k)}, pandas {pd_counts.get(k)}"
        for k, label in COUNT_LABELS
        if sl_counts.get(k) != pd_counts.get(k)
    ]
    return s, sl_counts, pd_doc, diffs


DATASKETCH_SCRIPT = r"""
import json, re, sys, time, unicodedata
from datasketch import MinHash, MinHashLSH
path, n, threshold, ngram, num_perm = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
rows = []
with open(path, encoding="utf-8") as f:
    for i, line in enumerate(f):
        if i >= n:
            break
        r = json.loads(line)
        rows.append((r["question"], r["answer"]))
PUNCT = re.compile(r"[^\w\s]|_")
WS = re.compile(r"\s+")
def key(t):
    # sluice's dedup_key: NFKC, lowercase, punctuation removed, single spaces
    return WS.sub(" ", PUNCT.sub("", unicodedata.normalize("NFKC", t).lower())).strip()
t0 = time.perf_counter()
sigs = {}
lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
kept = removed = 0
for i, (q, a) in enumerate(rows):
    text = key(q) + "\n" + key(a)
    grams = {text[j:j + ngram].encode("utf-8") for j in range(max(1, len(text) - ngram + 1))}
    m = MinHash(num_perm=num_perm)
    m.update_batch(list(grams))
    # LSH candidates, then the signature check sluice also makes
    if any(m.jaccard(c) >= threshold for c in (sigs[j] for j in lsh.query(m))):
        removed += 1
        continue
    lsh.insert(i, m)
    sigs[i] = m
    kept += 1
print(json.dumps({"seconds": time.perf_counter() - t0, "rows": len(rows), "removed": removed}))
"""


def bench_minhash(sluice: Path, data: Path, base: Path, n: int, args, with_datasketch: bool) -> dict:
    s = Samples()
    yaml = minhash_yaml(f"data/{data.name}")
    removed = bands = None
    for rep in range(args.reps):
        ws = sluice_workspace(base, "minhash", data, yaml)
        try:
            m, doc = sluice_run(sluice, ws, args.timeout)
            st = {x["name"]: x for x in doc["stages"]}
            stage_s = st["near"]["duration_ms"] / 1000
            s.add("stage", stage_s)
            s.add("wall", m.seconds)
            s.add("rss", m.maxrss)
            near = find_stats(stage_stats(ws), "near")
            if int(near["rows_in"]) != n:
                raise BenchError(f"sanity check failed: the near-dedup stage read {near['rows_in']} rows, not {n}")
            removed = rule(near, "near_dedup", "removed")
            r = next(x for x in near["rules"] if x["rule"] == "near_dedup")
            bands = (r.get("bands"), r.get("rows_per_band"))
        finally:
            if not args.keep:
                shutil.rmtree(ws, ignore_errors=True)
        log(f"  [minhash] sluice rep {rep + 1}/{args.reps}: stage {fmt_time(stage_s)} "
            f"({n / stage_s:,.0f} rows/s), removed {removed}")
    out = {"sluice": s, "removed": removed, "bands": bands, "rows": n, "datasketch": None}
    if with_datasketch:
        script = base / "datasketch_ref.py"
        script.write_text(DATASKETCH_SCRIPT)
        ds = Samples()
        for rep in range(args.datasketch_reps):
            m = run_measured([str(VENV_PY), str(script), str(data), str(n), str(NEAR_THRESHOLD), "5", "128"],
                             base, args.timeout)
            d = json.loads(m.stdout)
            ds.add("seconds", d["seconds"])
            ds.add("rss", m.maxrss)
            out["datasketch_removed"] = d["removed"]
            log(f"  [minhash] datasketch rep {rep + 1}/{args.datasketch_reps}: {fmt_time(d['seconds'])} "
                f"({n / d['seconds']:,.0f} rows/s), removed {d['removed']}")
        out["datasketch"] = ds
    return out


# --------------------------------------------------------------------------------------------
# Report


def fmt_mb(b: float | None) -> str:
    if b is None:
        return "—"
    mib = b / (1 << 20)
    return f"{mib / 1024:.2f} GiB" if mib >= 1024 else f"{mib:.0f} MiB"


def render(head: list[str], rows: list[list[str]], right: set[int]) -> str:
    cells = [head] + rows
    width = [max(len(c[i]) for c in cells) for i in range(len(head))]

    def line(c: list[str]) -> str:
        return "| " + " | ".join(c[i].rjust(width[i]) if i in right else c[i].ljust(width[i]) for i in range(len(c))) + " |"

    sep = "|" + "|".join(("-" * (width[i] + 1) + ":") if i in right else ("-" * (width[i] + 2)) for i in range(len(head))) + "|"
    return "\n".join([line(head), sep] + [line(c) for c in rows])


def faster(x: float | None) -> str:
    """A speed ratio other/sluice as words."""
    if not x:
        return "—"
    return f"{fmt_x(x)} faster" if x >= 1 else f"{fmt_x(1 / x)} slower"


def table(rows_n: int, p: Samples, mh: dict) -> tuple[str, dict]:
    out: list[list[str]] = []
    wl = f"collect + clean + split, {rows_n:,} rows"
    pw, sw = p.med("pandas wall"), p.med("sluice wall")
    x = pw / sw if pw and sw else None
    met = "—" if x is None else ("yes" if x >= T_SPEEDUP else "**NO**")
    out.append([wl, "wall time", fmt_time(pw), fmt_time(sw), faster(x), f"≥ {T_SPEEDUP:.0f}× faster", met])
    pr, sr = p.med("pandas rss"), p.med("sluice rss")
    out.append([wl, "peak memory (RSS)", fmt_mb(pr), fmt_mb(sr),
                (f"{pr / sr:.1f}× less" if pr >= sr else f"{sr / pr:.1f}× more") if pr and sr else "—",
                "reported", "yes"])
    pc, sc = p.med("pandas cpu"), p.med("sluice cpu")
    out.append([wl, "CPU time (user + system)", fmt_time(pc), fmt_time(sc),
                (f"{pc / sc:.1f}× less" if pc >= sc else f"{sc / pc:.1f}× more") if pc and sc else "—", "", ""])
    pt = p.med("pandas wall") - p.med("pandas import")
    out.append([wl, "wall time without pandas' imports", fmt_time(pt), fmt_time(sw),
                faster(pt / sw if sw else None), "", ""])
    n = mh["rows"]
    st = mh["sluice"].med("stage")
    ds = mh["datasketch"]
    ds_s = ds.med("seconds") if ds else None
    wm = f"MinHash near-dedup, {n:,} rows"
    out.append([wm, "rows/s (threshold 0.8, 128 perms, 5-grams)",
                f"{n / ds_s:,.0f}¹" if ds_s else "skipped¹", f"{n / st:,.0f}",
                faster(ds_s / st if ds_s else None), "reported", "yes"])
    out.append([wm, "peak memory (RSS)", fmt_mb(ds.med("rss")) + "¹" if ds else "—",
                fmt_mb(mh["sluice"].med("rss")), "", "", ""])
    head = ["workload", "measure", "pandas", "sluice", "ratio", "target", "met"]
    summary = {"speedup": x, "pandas_s": pw, "sluice_s": sw, "pandas_rss": pr, "sluice_rss": sr,
               "minhash_rows_per_s": n / st, "datasketch_rows_per_s": n / ds_s if ds_s else None}
    return render(head, out, {2, 3, 4}), summary


def wait_for_load(max_load: float, wait_s: float) -> tuple[str, float]:
    """Polls the 1-minute load average every 60 s until it is below `max_load` (at most `wait_s`)."""
    if max_load <= 0:
        return "not waited for (--max-load 0)", os.getloadavg()[0]
    t0 = time.time()
    while True:
        load = os.getloadavg()[0]
        waited = time.time() - t0
        if load < max_load:
            return (f"waited {waited / 60:.1f} min for it to drop below {max_load}" if waited > 1
                    else f"below {max_load}, no wait"), load
        if waited >= wait_s:
            log(f"load average {load:.2f} still ≥ {max_load} after {wait_s / 60:.0f} min: measuring anyway")
            return f"still {load:.2f} (≥ {max_load}) after waiting {wait_s / 60:.0f} min; measured anyway", load
        log(f"load average {load:.2f} ≥ {max_load}: waiting (polling every 60 s, up to {wait_s / 60:.0f} min)")
        time.sleep(60)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: 100,000 rows, 1 rep, 20,000-row MinHash, no load wait")
    p.add_argument("--rows", type=int, help="rows in the dataset (default 1,000,000; --quick: 100,000)")
    p.add_argument("--minhash-rows", type=int, help="rows for MinHash near-dedup (default 100,000; --quick: 20,000)")
    p.add_argument("--reps", type=int, help="repetitions (default 3; --quick: 1)")
    p.add_argument("--warmup", type=int, help="unmeasured repetitions of both sides first (default 1; --quick: 0)")
    p.add_argument("--datasketch-reps", type=int, default=1, help="repetitions of the datasketch reference (default 1; it is slow)")
    p.add_argument("--no-datasketch", action="store_true", help="skip the datasketch reference")
    p.add_argument("--max-load", type=float, help="wait until the 1-minute load average is below this before measuring (default 1.5; --quick: 0 = do not wait)")
    p.add_argument("--load-wait", type=float, default=1200, help="seconds to wait at most for the load to drop (default 1200)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds any one command may take (default 1800)")
    p.add_argument("--keep", action="store_true", help="keep the work directories under bench/work/")
    p.add_argument("--results", type=Path, help="where to write the table (default bench/results/data-<date>.md)")
    a = p.parse_args()
    a.rows = a.rows or (100_000 if a.quick else 1_000_000)
    a.minhash_rows = a.minhash_rows or (20_000 if a.quick else 100_000)
    a.reps = a.reps or (1 if a.quick else 3)
    if a.warmup is None:
        a.warmup = 0 if a.quick else 1
    if a.max_load is None:
        a.max_load = 0.0 if a.quick else 1.5
    if a.rows < 1000 or a.minhash_rows < 100 or a.reps < 1 or a.warmup < 0 or a.datasketch_reps < 0:
        p.error("--rows must be at least 1000, --minhash-rows at least 100, --reps at least 1, --warmup and --datasketch-reps at least 0")
    return a


def main() -> int:
    args = parse_args()
    started = time.time()
    engine.WORK.mkdir(parents=True, exist_ok=True)
    engine.clean_stale_runs()
    run_dir = engine.WORK / f"run-{dt.datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}"
    run_dir.mkdir()
    try:
        have, with_ds = ensure_venv(args.timeout, not args.no_datasketch)
        sl_bin, sl_version, sl_rev = engine.ensure_sluice(run_dir, args.timeout)
        log(f"tools: {sl_version} ({sl_rev}); " + ", ".join(f"{k} {v}" for k, v in sorted(have.items())))
        data = ensure_dataset(args.rows)
        mh_data = ensure_dataset(args.minhash_rows)
        for f in (data, mh_data):  # warm the page cache
            with open(f, "rb") as fh:
                while fh.read(1 << 24):
                    pass

        load_note, load_start = wait_for_load(args.max_load, args.load_wait)
        t_measure = time.time()
        log(f"pipeline: {args.rows:,} rows, ×{args.reps}, sluice and pandas interleaved (load {load_start:.2f})")
        p, sl_counts, pd_doc, diffs = bench_pipeline(sl_bin, data, run_dir, args)
        log(f"minhash: {args.minhash_rows:,} rows, ×{args.reps}")
        mh = bench_minhash(sl_bin, mh_data, run_dir, args.minhash_rows, args, with_ds)
        load_end = os.getloadavg()[0]

        tbl, summary = table(args.rows, p, mh)
        elapsed = time.time() - started
        today = dt.date.today().isoformat()
        loads = p.all("load")
        header = [
            f"# sluice data benchmark: sluice vs pandas, {today}{' (quick)' if args.quick else ''}",
            "",
            f"- sluice: {sl_version} (git {sl_rev}), default threads ({CORES} cores)",
            f"- pandas {have.get('pandas')}, pyarrow {have.get('pyarrow')}, numpy {have.get('numpy')}"
            + (f", datasketch {have.get('datasketch')}" if with_ds else ", datasketch not run")
            + f"; Python {pd_version_line()}",
            f"- machine: {platform.platform()}, {CORES} cores; load average (1 min): {load_start:.2f} at the "
            f"start of the measurements ({load_note}); {min(loads):.2f}–{max(loads):.2f} after each "
            f"repetition (the benchmark itself accounts for 1–2 of it); {load_end:.2f} at the end",
            f"- data: `{data.relative_to(REPO)}` ({data.stat().st_size / 1e6:.0f} MB, {args.rows:,} rows, "
            f"generated with seed {GEN_SEED}); MinHash on `{mh_data.relative_to(REPO)}` (its first "
            f"{args.minhash_rows:,} rows)",
            f"- medians of {args.reps} run{'s' if args.reps != 1 else ''}, sluice and pandas interleaved, each "
            f"in a fresh directory; page cache warm; total {elapsed / 60:.1f} min "
            f"({(time.time() - t_measure) / 60:.1f} min measuring)",
            f"- before them, {args.warmup} warm-up run{'s' if args.warmup != 1 else ''} of each side, checked "
            f"but not in the medians: " + (", ".join(
                f"sluice {fmt_time(a)} and pandas {fmt_time(b)}"
                for a, b in zip(p.all("warmup sluice wall"), p.all("warmup pandas wall"))) or "none"),
            "",
        ]
        footer = footer_lines(args, p, sl_counts, pd_doc, diffs, mh)
        doc = "\n".join(header) + "\n" + tbl + "\n" + "\n".join(footer) + "\n"
        print(doc)
        out = args.results or engine.RESULTS / f"data-{today}{'-quick' if args.quick else ''}.md"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(doc)
        log(f"wrote {out}")
        log("summary: " + json.dumps(summary))
        return 0
    except BenchError as e:
        log(f"error: {e}")
        return 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        if not args.keep:
            shutil.rmtree(run_dir, ignore_errors=True)


def pd_version_line() -> str:
    try:
        return run_cmd([str(VENV_PY), "-c", "import platform; print(platform.python_version())"], REPO,
                       timeout=60).stdout.strip()
    except BenchError:
        return "?"


def footer_lines(args, p: Samples, sl_counts: dict, pd_doc: dict, diffs: list[str], mh: dict) -> list[str]:
    lines = [""]
    lines.append(
        "*wall time*: the whole command, process start-up included: `sluice run --json` in a fresh "
        "workspace (its own `.sluice/`; the JSONL hard-linked in) for the workflow `collect` → `clean` "
        f"(normalize, strip `{PATTERN}`, min_chars {MIN_CHARS}, max_chars {MAX_CHARS}, "
        "dedup [exact, normalized]) → `split` (0.8/0.1/0.1, random, seed "
        f"{SEED}); `bench/data_pandas.py` under bench/.venv's Python for pandas (the same steps in one "
        "process, three zstd Parquet files out). *peak memory*: ru_maxrss of the process from `wait4`."
    )
    steps = [k[len("sluice stage "):] for k in p.values if k.startswith("sluice stage ")]
    lines.append("")
    lines.append(
        "Where the time goes (medians). sluice, per stage, `duration_ms` from `--json` (hashing the "
        "stage's inputs and storing its outputs in the cache included) and, in brackets, the stage's "
        "own work (the lockfile's `duration-ms`): "
        + ", ".join(f"{s} {fmt_time(p.med('sluice stage ' + s))} ({fmt_time(p.med('sluice work ' + s))})"
                    for s in steps)
        + f"; the rest of the run (start-up, planning, the lockfile) "
        f"{fmt_time(p.med('sluice engine'))}; CPU time (user + system) {fmt_time(p.med('sluice cpu'))}, "
        f"{p.med('sluice cpu') / p.med('sluice wall'):.2f} cores busy on average. pandas: CPU time "
        f"{fmt_time(p.med('pandas cpu'))}, {p.med('pandas cpu') / p.med('pandas wall'):.2f} cores; per step: import "
        f"{fmt_time(p.med('pandas import'))}, "
        + ", ".join(f"{k[len('pandas step '):]} {fmt_time(p.med(k))}" for k in p.values if k.startswith("pandas step "))
        + "."
    )
    lines.append("")
    lines.append(
        "Every repetition (wall time): sluice "
        + ", ".join(fmt_time(v) for v in p.all("sluice wall"))
        + "; pandas "
        + ", ".join(fmt_time(v) for v in p.all("pandas wall"))
        + "; MinHash stage "
        + ", ".join(fmt_time(v) for v in mh["sluice"].all("stage"))
        + ". The machine is shared: other sessions' builds and benchmarks raise the load, and "
        "sluice, which can use both cores, loses more to them than single-threaded pandas; CPU time "
        "is the steadier comparison."
    )
    lines.append("")
    lines.append("Rows at every step (both sides must agree; they are checked on every repetition):")
    lines.append("")
    rows = [[label, f"{sl_counts.get(k, '—'):,}" if isinstance(sl_counts.get(k), int) else "—",
             f"{pd_doc['counts'].get(k, '—'):,}" if isinstance(pd_doc["counts"].get(k), int) else "—"]
            for k, label in COUNT_LABELS]
    lines.append(render(["step", "sluice (stats.json)", "pandas"], rows, {1, 2}))
    lines.append("")
    if diffs:
        lines.append("**Counts differ**: " + "; ".join(diffs) + ".")
    else:
        lines.append("All counts agree exactly.")
    ds = mh["datasketch"]
    lines.append("")
    lines.append(
        f"MinHash: `clean` with `normalize: false` and `near_dedup: {{threshold: {NEAR_THRESHOLD}}}` "
        f"(128 permutations, 5-character shingles of the normalised `input` + `output`, "
        f"{mh['bands'][0]} bands × {mh['bands'][1]} rows) on {mh['rows']:,} rows; rows/s = rows / the "
        f"stage's `duration_ms` (reading and writing its Parquet included; median "
        f"{fmt_time(mh['sluice'].med('stage'))}, whole `sluice run` {fmt_time(mh['sluice'].med('wall'))}); "
        f"it removed {mh['removed']:,} rows. "
        + (
            f"¹ datasketch {VENV_DATASKETCH_NOTE}: `MinHash` + `MinHashLSH` over the same shingles, "
            f"candidates checked against the threshold as sluice does, one row at a time in Python "
            f"(reading the JSON not timed; median of {args.datasketch_reps}); it removed "
            f"{mh.get('datasketch_removed', 0):,} rows (MinHash is an estimate; the two use different hash "
            "functions). pandas has no MinHash: datasketch stands in its column as the usual Python tool for the job."
            if ds else "¹ datasketch was not run."
        )
    )
    return lines


VENV_DATASKETCH_NOTE = "(pure Python + NumPy)"


if __name__ == "__main__":
    sys.exit(main())
