#!/usr/bin/env python3
"""Scheduler benchmark: sluice's own per-stage cost on 1,000 trivial stages.

Run from the repository root:

    python3 bench/scheduler.py            # full run: about 25 minutes, 18 of them DVC's first run
    python3 bench/scheduler.py --quick    # smoke run: 100 stages

Two pipelines of N trivial stages (default 1,000), a wide one (one root, N-1 stages that all read
it) and a long chain (each stage reads the one before). For each: the first run and the no-op
re-run, and the same N shell commands run one after another by a generated shell script, which
is what the commands cost by themselves. Engine overhead per stage = (sluice's wall time − the
commands' own time) / N; on a no-op run nothing runs, so it is sluice's wall time / N. The wide
pipeline is also run under DVC (first run and no-op). One Markdown table of medians, printed and
written to bench/results/scheduler-<date>.md. See bench/README.md.

Reuses bench/engine.py for tools (DVC in bench/.venv, the sluice build), workspaces, timing and
formatting. Python 3.11 standard library only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.dont_write_bytecode = True  # no bench/__pycache__ from importing engine
sys.path.insert(0, str(Path(__file__).resolve().parent))
import engine  # noqa: E402
from engine import BenchError, Workload, fmt_time, fmt_x, log, run_cmd  # noqa: E402

T_OVERHEAD_MS = 1.0  # the target: engine overhead under 1 ms per stage
SEED = "data/seed.txt"
CORES = os.cpu_count() or 1
LOADS: list[float] = []  # the 1-minute load average after each sluice repetition


# --------------------------------------------------------------------------------------------
# Workloads: every stage is `read n < IN; echo $((n + k)) > OUT` (shell builtins only, so the
# command costs little more than starting `sh`), every output distinct.


@dataclass
class Stage:
    name: str
    src: str  # the workspace path it reads
    src_ref: str  # the same, as the sluice workflow names it
    out: str
    k: int

    def cmd(self, inp: str, out: str) -> str:
        return f"read n < {inp}; echo $((n + {self.k})) > {out}"


def wide_stages(n: int) -> list[Stage]:
    """s0 reads the seed; s1 … s{n-1} all read s0's output (a fan-out of n-1)."""
    st = [Stage("s0", SEED, SEED, "out/s0.txt", 1)]
    for i in range(1, n):
        st.append(Stage(f"s{i}", "out/s0.txt", "${{ stages.s0.outputs.out }}", f"out/s{i}.txt", i))
    return st


def chain_stages(n: int) -> list[Stage]:
    """s0 reads the seed; s{i} reads s{i-1}'s output."""
    st = [Stage("s0", SEED, SEED, "out/s0.txt", 1)]
    for i in range(1, n):
        st.append(
            Stage(f"s{i}", f"out/s{i - 1}.txt", f"${{{{ stages.s{i - 1}.outputs.out }}}}", f"out/s{i}.txt", 1)
        )
    return st


def sluice_yaml(name: str, stages: list[Stage]) -> str:
    lines = ["version: 1", f"name: {name}", "stages:"]
    for s in stages:
        lines += [
            f"  {s.name}:",
            f"    run: {s.cmd('${{ inputs.prev }}', '${{ outputs.out }}')}",
            "    inputs:",
            f"      prev: {s.src_ref}",
            "    outputs:",
            f"      out: {s.out}",
        ]
    return "\n".join(lines) + "\n"


def dvc_yaml(stages: list[Stage]) -> str:
    lines = ["stages:"]
    for s in stages:
        lines += [
            f"  {s.name}:",
            f"    cmd: {s.cmd(s.src, s.out)}",
            "    deps:",
            f"    - {s.src}",
            "    outs:",
            f"    - {s.out}",
        ]
    return "\n".join(lines) + "\n"


def baseline_script(stages: list[Stage]) -> str:
    """The same commands, each through its own `sh -c` (as sluice runs them), one after another."""
    lines = ["set -e"]
    lines += [f"sh -c {shlex.quote(s.cmd(s.src, s.out))}" for s in stages]
    return "\n".join(lines) + "\n"


def prepare_seed(ws: Path) -> None:
    (ws / "data").mkdir(parents=True, exist_ok=True)
    (ws / SEED).write_text("0\n")
    old = time.time() - 3600  # an input that is not "racy" to either tool
    os.utime(ws / SEED, (old, old))


def expected_outputs(stages: list[Stage]) -> dict[str, str]:
    vals: dict[str, int] = {SEED: 0}
    for s in stages:
        vals[s.out] = vals[s.src] + s.k
    return {s.out: f"{vals[s.out]}\n" for s in stages}


# --------------------------------------------------------------------------------------------
# Measurements


@dataclass
class Samples:
    values: dict[str, list[float]] = field(default_factory=dict)
    info: dict[str, list[float]] = field(default_factory=dict)  # diagnostics (ms)

    def add(self, key: str, seconds: float) -> None:
        self.values.setdefault(key, []).append(seconds)

    def note(self, key: str, value: float) -> None:
        self.info.setdefault(key, []).append(value)

    def med(self, key: str) -> float | None:
        v = self.values.get(key)
        return statistics.median(v) if v else None


# Every workspace stays until the whole benchmark has run. Deleting a workspace frees thousands of
# inodes, and for a minute or more after that ext4 checks each free inode it considers against the
# inode table ("recently deleted") on every file creation, which slowed the next run's creates
# several-fold: whichever tool ran right after a deletion paid for it. Nothing in the measured runs
# deletes files, so the runs measure the tools and not the file system's bookkeeping.
DEFER_DELETES = True


def check_contents(ws: Path, want: dict[str, str], who: str) -> None:
    bad = []
    for path, text in want.items():
        p = ws / path
        got = p.read_text() if p.is_file() else None
        if got != text:
            bad.append(f"{path}: {got!r} (want {text!r})")
    if bad:
        raise BenchError(f"sanity check failed: {who} left wrong outputs in {ws}: {bad[:5]}")


def time_baseline(base: Path, tag: str, stages: list[Stage], want: dict[str, str], timeout: float) -> float:
    d = Path(tempfile.mkdtemp(prefix=f"{tag}-sh-", dir=base))
    try:
        (d / "out").mkdir()
        prepare_seed(d)
        (d / "run.sh").write_text(baseline_script(stages))
        r = run_cmd(["sh", "run.sh"], d, timeout=timeout)
        check_contents(d, want, "the shell baseline")
        return r.seconds
    finally:
        # Workspaces are deleted at the end, not between runs: see DEFER_DELETES.
        pass


def sluice_run(sluice: Path, ws: Path, jobs: int | None, timeout: float) -> tuple[float, dict]:
    cmd = [str(sluice), "run", "flow.yaml", "--json"]
    if jobs is not None:
        cmd += ["-j", str(jobs)]
    r = run_cmd(cmd, ws, timeout=timeout)
    try:
        return r.seconds, json.loads(r.stdout)
    except json.JSONDecodeError as e:
        raise BenchError(f"sluice run --json printed no JSON ({e}) in {ws}:\n{r.stdout[:2000]}")


LOCK_DURATION = re.compile(r"^    duration-ms: (\d+)\s*$", re.M)


def check_summary(doc: dict, ws: Path, what: str, expect: str, n: int) -> None:
    if not doc.get("ok"):
        raise BenchError(f"sluice {what} failed in {ws}: {json.dumps(doc)[:2000]}")
    engine.check_sluice_outcome(doc, ws, what, expect)
    if len(doc["stages"]) != n:
        raise BenchError(f"sanity check failed: sluice {what} in {ws} reports {len(doc['stages'])} stages, not {n}")


def sluice_first(
    tools: engine.Tools,
    base: Path,
    wl: Workload,
    n: int,
    jobs: int | None,
    want: dict[str, str],
    s: Samples,
    key: str,
    args: argparse.Namespace,
    noop: bool,
) -> str:
    """A fresh workspace: the first run (every stage must say `ran`), then with `noop` two no-op
    re-runs (every stage `cached`). Returns a log line."""
    ws = engine.make_workspace(base, wl.name, wl, "sluice", tools, False)
    try:
        t, doc = sluice_run(tools.sluice, ws, jobs, args.timeout)
        check_summary(doc, ws, "first run", "ran", n)
        check_contents(ws, want, "sluice's first run")
        s.add(key, t)
        # The engine's own share: the whole command's wall time minus each command's own time as
        # sluice measured it (`run_ms`: from just before the spawn until it exited), per stage.
        run_s = sum(st.get("run_ms", 0.0) for st in doc["stages"]) / 1000
        s.add(f"{key} engine", (t - run_s) / n)
        cmd_ms = sum(int(m) for m in LOCK_DURATION.findall((ws / doc.get("lockfile", "flow.lock")).read_text()))
        stage_ms = sum(st.get("duration_ms", 0) for st in doc["stages"])
        s.note(f"{key}: lockfile duration-ms", cmd_ms)
        s.note(f"{key}: summary stage duration_ms", stage_ms)
        line = f"first {fmt_time(t)} (Σ command {cmd_ms} ms"
        # A stage's summary time starts when it is ready, so with stages waiting for a slot it
        # includes the wait: only meaningful where one stage at a time is ready (the chain).
        line += f", Σ stage {stage_ms} ms)" if wl.name.startswith("chain") else ")"
        if noop:
            for label in ("no-op", "no-op again"):
                t, doc = sluice_run(tools.sluice, ws, jobs, args.timeout)
                check_summary(doc, ws, label, "cached", n)
                s.add(label, t)
                hashed = doc.get("hashed", {}).get("files")
                s.note(f"{label}: hashed files", hashed or 0)
                line += f", {label} {fmt_time(t)} (hashed {hashed})"
        return line
    finally:
        pass  # deleted with the run directory at the end (DEFER_DELETES)


def bench_sluice(tools: engine.Tools, base: Path, n: int, args: argparse.Namespace) -> dict[str, Samples]:
    """Interleaved per repetition, so that load from other processes hits all alike."""
    out: dict[str, Samples] = {}
    cases = []
    for kind, gen in (("wide", wide_stages), ("chain", chain_stages)):
        stages = gen(n)
        wl = Workload(f"{kind}{n}", dvc_yaml(stages), sluice_yaml(f"{kind}{n}", stages), [s.out for s in stages], prepare_seed)
        cases.append((kind, stages, wl, expected_outputs(stages)))
        out[kind] = Samples()
    for rep in range(args.reps):
        for kind, stages, wl, want in cases:
            s = out[kind]
            t = time_baseline(base, wl.name, stages, want, args.timeout)
            s.add("baseline", t)
            line = [f"commands alone {fmt_time(t)}"]
            if kind == "wide":
                line.append("-j 1 " + sluice_first(tools, base, wl, n, 1, want, s, "first, j1", args, noop=False))
            line.append("default -j " + sluice_first(tools, base, wl, n, None, want, s, "first, jdefault", args, noop=True))
            load = os.getloadavg()[0]
            LOADS.append(load)
            log(f"  [{wl.name}] rep {rep + 1}/{args.reps}: " + "; ".join(line) + f"; load {load:.2f}")
    return out


def bench_dvc(tools: engine.Tools, base: Path, n: int, args: argparse.Namespace) -> Samples:
    s = Samples()
    stages = wide_stages(n)
    wl = Workload(f"wide{n}", dvc_yaml(stages), "", [x.out for x in stages], prepare_seed)
    want = expected_outputs(stages)
    for rep in range(args.dvc_reps):
        ws = engine.make_workspace(base, wl.name, wl, "dvc", tools, args.dvc_scm)
        try:
            r = engine.dvc(tools, ws, "repro", timeout=args.timeout)
            check_contents(ws, want, "dvc repro")
            s.add("first", r.seconds)
            r2 = engine.dvc(tools, ws, "repro", timeout=args.timeout)
            if engine.UP_TO_DATE not in r2.stdout or "Running stage" in r2.stdout:
                raise BenchError(f"the second `dvc repro` in {ws} was not a no-op:\n{r2.stdout[-2000:]}")
            s.add("no-op", r2.seconds)
            log(
                f"  [{wl.name}] dvc rep {rep + 1}/{args.dvc_reps}: first {fmt_t(r.seconds)}, "
                f"no-op {fmt_time(r2.seconds)}; load {os.getloadavg()[0]:.2f}"
            )
        finally:
            pass  # deleted with the run directory at the end (DEFER_DELETES)
    return s


# --------------------------------------------------------------------------------------------
# Report


def fmt_t(s: float | None) -> str:
    """engine.fmt_time, but minutes from 2 minutes up (DVC's first run of 1,000 stages)."""
    return f"{s / 60:.1f} min" if s is not None and s >= 120 else fmt_time(s)


def best_over(s: Samples, key: str, n: int) -> float:
    """(fastest sluice run − fastest baseline) / n, in ms."""
    return (min(s.values[key]) - min(s.values["baseline"])) / n * 1000


def fmt_ms(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f} ms"


def met(x: float | None) -> str:
    return "—" if x is None else ("yes" if x < T_OVERHEAD_MS else "**NO**")


def render(head: list[str], rows: list[list[str]], right: set[int]) -> str:
    cells = [head] + rows
    width = [max(len(c[i]) for c in cells) for i in range(len(head))]

    def line(c: list[str]) -> str:
        return "| " + " | ".join(c[i].rjust(width[i]) if i in right else c[i].ljust(width[i]) for i in range(len(c))) + " |"

    sep = "|" + "|".join(("-" * (width[i] + 1) + ":") if i in right else ("-" * (width[i] + 2)) for i in range(len(head))) + "|"
    return "\n".join([line(head), sep] + [line(c) for c in rows])


def table(n: int, sl: dict[str, Samples], dv: Samples | None) -> tuple[str, dict]:
    target = f"< {T_OVERHEAD_MS:.0f} ms"
    rows: list[list[str]] = []
    summary = {}

    def dvc_cell(key: str) -> tuple[str, float | None]:
        if dv is None:
            return "skipped", None
        v = dv.med(key)
        return fmt_t(v), v

    def row(workload, measure, dkey, sl_s, over, tgt=True):
        dcell, dval = dvc_cell(dkey) if dkey else ("—", None)
        x = dval / sl_s if dval is not None and sl_s else None
        rows.append(
            [workload, measure, dcell, fmt_time(sl_s), fmt_x(x) if dkey else "—",
             over if isinstance(over, str) else fmt_ms(over), target if tgt else "", met(over) if tgt and not isinstance(over, str) else ""]
        )

    nn = f"{n:,}"
    w = sl["wide"]
    base = w.med("baseline")
    j1, jd = w.med("first, j1"), w.med("first, jdefault")
    o_j1 = (j1 - base) / n * 1000
    wl = f"wide (fan-out), {nn} stages"
    row(wl, f"first run, `-j 1` (commands alone: {fmt_time(base)})", "first", j1, o_j1)
    e_j1 = w.med("first, j1 engine") * 1000
    row(wl, "first run, `-j 1`: wall − the commands' own time (Σ `run_ms`)", None, j1, e_j1)
    row(wl, f"first run, `-j {CORES}` (default; {j1 / jd:.2f}× the speed of `-j 1`)", "first", jd,
        "n/a (parallel)", tgt=False)
    noop, noop2 = w.med("no-op"), w.med("no-op again")
    row(wl, "no-op re-run", "no-op", noop, noop / n * 1000)
    row(wl, "no-op, second time", None, noop2, noop2 / n * 1000)
    summary["wide"] = {"baseline": base, "j1": j1, "jdefault": jd, "overhead_j1_ms": o_j1, "engine_j1_ms": e_j1,
                       "noop": noop, "noop2": noop2}

    c = sl["chain"]
    base_c, first_c = c.med("baseline"), c.med("first, jdefault")
    o_c = (first_c - base_c) / n * 1000
    cl = f"chain, {nn} stages"
    row(cl, f"first run (commands alone: {fmt_time(base_c)})", None, first_c, o_c)
    e_c = c.med("first, jdefault engine") * 1000
    row(cl, "first run: wall − the commands' own time (Σ `run_ms`)", None, first_c, e_c)
    noop, noop2 = c.med("no-op"), c.med("no-op again")
    row(cl, "no-op re-run", None, noop, noop / n * 1000)
    row(cl, "no-op, second time", None, noop2, noop2 / n * 1000)
    summary["chain"] = {"baseline": base_c, "first": first_c, "overhead_ms": o_c, "engine_ms": e_c, "noop": noop, "noop2": noop2}

    head = ["workload", "measure", "dvc", "sluice", "speed-up (dvc/sluice)", "overhead/stage", "target", "met"]
    return render(head, rows, {2, 3, 4, 5}), summary


# --------------------------------------------------------------------------------------------


def wait_for_load(max_load: float, wait_s: float) -> tuple[list[str], float]:
    """Polls the 1-minute load average every 60 s until it is below `max_load` (at most `wait_s`).
    Returns log lines for the results file and the load at the start."""
    if max_load <= 0:
        return [], os.getloadavg()[0]
    t0 = time.time()
    while True:
        load = os.getloadavg()[0]
        if load < max_load:
            waited = time.time() - t0
            note = f"waited {waited / 60:.1f} min for it to drop below {max_load}" if waited > 1 else f"below {max_load}, no wait"
            return [note], load
        if time.time() - t0 >= wait_s:
            log(f"load average {load:.2f} still ≥ {max_load} after {wait_s / 60:.0f} min: measuring anyway")
            return [f"still {load:.2f} (≥ {max_load}) after waiting {wait_s / 60:.0f} min; measured anyway"], load
        log(f"load average {load:.2f} ≥ {max_load}: waiting (polling every 60 s, up to {wait_s / 60:.0f} min)")
        time.sleep(60)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: 100 stages, 3 reps, no load wait")
    p.add_argument("--stages", type=int, help="stages per pipeline (default 1000; --quick: 100)")
    p.add_argument("--reps", type=int, help="repetitions for sluice and the shell baseline (default 5; --quick: 3)")
    p.add_argument("--dvc-reps", type=int, default=1, help="repetitions for DVC (default 1)")
    p.add_argument("--no-dvc", action="store_true", help="skip DVC")
    p.add_argument("--no-dvc-scm", dest="dvc_scm", action="store_false", help="`dvc init --no-scm` instead of `git init` + `dvc init`")
    p.add_argument("--max-load", type=float, help="wait until the 1-minute load average is below this before measuring (default 1.5; --quick: 0 = do not wait)")
    p.add_argument("--load-wait", type=float, default=1200, help="seconds to wait at most for the load to drop (default 1200)")
    p.add_argument("--timeout", type=float, default=3600, help="seconds any one command may take (default 3600)")
    p.add_argument("--keep", action="store_true", help="keep the work directories under bench/work/")
    p.add_argument("--results", type=Path, help="where to write the table (default bench/results/scheduler-<date>.md)")
    a = p.parse_args()
    a.stages = a.stages or (100 if a.quick else 1000)
    a.reps = a.reps or (3 if a.quick else 5)
    if a.max_load is None:
        a.max_load = 0.0 if a.quick else 1.5
    if a.no_dvc:
        a.dvc_reps = 0
    if a.stages < 2 or a.reps < 1 or a.dvc_reps < 0:
        p.error("--stages must be at least 2, --reps at least 1, --dvc-reps at least 0")
    return a


def main() -> int:
    args = parse_args()
    started = time.time()
    engine.WORK.mkdir(parents=True, exist_ok=True)
    engine.clean_stale_runs()
    run_dir = engine.WORK / f"run-{dt.datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}"
    run_dir.mkdir()
    n = args.stages
    try:
        if args.dvc_reps:
            dvc_bin, dvc_version = engine.ensure_dvc(args.timeout)
        else:
            dvc_bin, dvc_version = Path("dvc"), "not run"
        sl_bin, sl_version, sl_rev = engine.ensure_sluice(run_dir, args.timeout)
        tools = engine.Tools(sl_bin, sl_version, sl_rev, dvc_bin, dvc_version, Path(), "", engine.dvc_env_base())
        log(f"tools: {sl_version} ({sl_rev}), dvc {dvc_version}")

        load_notes, load_start = wait_for_load(args.max_load, args.load_wait)
        t_measure = time.time()
        log(f"sluice and the shell baseline: {n} stages, ×{args.reps} (load {load_start:.2f})")
        sl = bench_sluice(tools, run_dir, n, args)
        dv = None
        if args.dvc_reps:
            log(f"dvc: wide, {n} stages, ×{args.dvc_reps} (minutes: DVC runs stages one at a time)")
            dv = bench_dvc(tools, run_dir, n, args)
        load_end = os.getloadavg()

        tbl, summary = table(n, sl, dv)
        elapsed = time.time() - started
        today = dt.date.today().isoformat()
        w, c = sl["wide"], sl["chain"]
        header = [
            f"# sluice scheduler benchmark: {n:,} trivial stages, {today}{' (quick)' if args.quick else ''}",
            "",
            f"- sluice: {sl_version} (git {sl_rev}); dvc: {dvc_version}"
            + (f" ({'git + dvc init' if args.dvc_scm else 'dvc init --no-scm'})" if args.dvc_reps else ""),
            f"- machine: {platform.platform()}, {CORES} cores, Python {platform.python_version()}",
            f"- load average (1 min): {load_start:.2f} at the start of the measurements"
            + (f" ({'; '.join(load_notes)})" if load_notes else "")
            + f"; {min(LOADS):.2f}–{max(LOADS):.2f} during the sluice runs (the benchmark itself accounts for 1–2 of it)"
            + (f", {load_end[0]:.2f} after DVC" if args.dvc_reps else ""),
            f"- medians of {args.reps} runs (sluice and the shell baseline, interleaved) and "
            f"{args.dvc_reps} run{'s' if args.dvc_reps != 1 else ''} (DVC); each run in a fresh workspace; "
            f"wall time of the whole command; total {elapsed / 60:.1f} min "
            f"({(time.time() - t_measure) / 60:.1f} min measuring)",
            "",
        ]
        in_stage_c = statistics.median(
            (st - cm) / n
            for st, cm in zip(c.info["first, jdefault: summary stage duration_ms"], c.info["first, jdefault: lockfile duration-ms"])
        )
        c_over_med = summary["chain"]["overhead_ms"]
        footer = [
            "",
            f"Stages: `read n < IN; echo $((n + k)) > OUT` (shell builtins only; every output distinct). "
            f"*wide*: `s0` reads `{SEED}`, the other {n - 1:,} read `s0`'s output; *chain*: each stage reads "
            "the one before. *first run*: `sluice run --json` / `dvc repro` in a fresh workspace; "
            "*no-op re-run*: the same again right after (sluice hashes every output again then: they "
            "were written inside the stat cache's racy window); *no-op, second time*: once more. "
            f"The chain and the no-op runs use the default `-j` ({CORES}).",
            "*commands alone*: the same N commands, each through its own `sh -c` as sluice runs them, "
            "one after another from one generated shell script (`sh run.sh`) in a fresh directory. "
            "*overhead/stage*: (sluice − commands alone) / N for first runs, which are sequential in both "
            "(the chain always; the wide pipeline with `-j 1`); sluice / N for no-op runs (nothing runs). "
            "With the default `-j` the wide run overlaps commands, so it has no per-stage overhead to subtract; "
            "its row shows the parallel speed-up.",
            "From sluice's own per-stage times (the summary's `duration_ms`: from the stage being ready to "
            "its record written; the lockfile's `duration-ms`: its command, from spawn to exit; both whole "
            "milliseconds, truncated, so the difference is good to about ±0.5 ms): in the chain, sluice's "
            f"work inside a stage besides its command (hashing the input, preparing the output path, storing the "
            f"output, writing the record, and the thread hand-offs in between) is {in_stage_c:.2f} ms per "
            f"stage (median over the runs) of the {c_over_med:.2f} ms of overhead.",
            "Overhead/stage from the fastest of the runs instead of the medians (less sensitive to other "
            f"load on the machine): wide `-j 1` {best_over(w, 'first, j1', n):.2f} ms, chain "
            f"{best_over(c, 'first, jdefault', n):.2f} ms.",
            "DVC runs only the wide pipeline; it runs stages one at a time whatever the pipeline's shape.",
            "Workspaces are deleted only after the last run: deleting thousands of files between runs made "
            "the next run's file creations slow (ext4's check of recently deleted inodes), whichever tool it was.",
        ]
        doc = "\n".join(header) + "\n" + tbl + "\n" + "\n".join(footer) + "\n"
        print(doc)
        out = args.results or engine.RESULTS / f"scheduler-{today}{'-quick' if args.quick else ''}.md"
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


if __name__ == "__main__":
    sys.exit(main())
