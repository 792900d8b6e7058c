#!/usr/bin/env python3
"""Engine benchmark: sluice against DVC on the same pipelines, side by side.

Run from the repository root:

    python3 bench/engine.py            # full run (10-20 minutes: DVC is slow)
    python3 bench/engine.py --quick    # smoke run: no 200-stage DVC, no 1 GiB case

It sets up its tools (a virtualenv with DVC at bench/.venv, b3sum under bench/.tools), builds
sluice (`cargo build --release`, or takes SLUICE_BIN), generates every workload twice (a
`dvc.yaml` and an equivalent sluice workflow) in fresh directories under bench/work/, times each
measurement several times, and prints one Markdown table of medians, which it also writes to
bench/results/engine-<date>.md. See bench/README.md.

Python 3.11 standard library only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
VENV = BENCH / ".venv"
TOOLS = BENCH / ".tools"
WORK = BENCH / "work"
DATA = WORK / "data"  # kept between runs: the 1 GiB file is generated once
RESULTS = BENCH / "results"

DVC_SPEC = "dvc==3.67.*"
DVC_FALLBACK_SPEC = "dvc>=3,<4"
GIB = 1 << 30
BIG_NAME = "random-1GiB.bin"
DIR_FILES = 10_000
DIR_FANOUT = 100  # 100 directories of 100 files

# Targets from the issue.
T_NOOP_200 = 100.0  # no-op re-run and status of the 200-stage pipeline: >= 100x faster than DVC
T_FIRST_200 = 50.0  # first run of the 200-stage pipeline: >= 50x faster than DVC
T_HASH = 0.90  # first hashing of 1 GiB: >= 90% of b3sum's throughput
T_STATUS_MS = 100.0  # no-op status with the 1 GiB file / the 10,000-file directory: < 100 ms


class BenchError(Exception):
    """A failure that ends the benchmark with a clear message."""


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Running commands


@dataclass
class Result:
    seconds: float
    stdout: str
    stderr: str


def run_cmd(
    cmd: list[str],
    cwd: Path,
    env: dict[str, str] | None = None,
    timeout: float = 900,
    check: bool = True,
) -> Result:
    """Runs `cmd` in its own process group, timing it; kills the whole group on timeout."""
    t0 = time.perf_counter()
    try:
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
    except OSError as e:
        raise BenchError(f"cannot start {cmd[0]}: {e}") from e
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.communicate()
        raise BenchError(f"timed out after {timeout:.0f} s: {' '.join(cmd)} (in {cwd})")
    except BaseException:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        raise
    seconds = time.perf_counter() - t0
    if check and proc.returncode != 0:
        tail = "\n".join((out + err).strip().splitlines()[-25:])
        raise BenchError(
            f"command failed (exit {proc.returncode}): {' '.join(cmd)}\n  in {cwd}\n{tail}"
        )
    return Result(seconds, out, err)


# --------------------------------------------------------------------------------------------
# Tools


@dataclass
class Tools:
    sluice: Path
    sluice_version: str
    sluice_rev: str
    dvc: Path
    dvc_version: str
    b3sum: Path
    b3sum_version: str
    dvc_env: dict[str, str] = field(default_factory=dict)


def ensure_dvc(timeout: float) -> tuple[Path, str]:
    dvc = VENV / "bin" / "dvc"
    pip = VENV / "bin" / "pip"
    if dvc.exists():
        try:
            v = run_cmd([str(dvc), "--version"], REPO, env=dvc_env_base(), timeout=120)
            if v.stdout.strip().startswith("3."):
                return dvc, v.stdout.strip()
            log(f"bench/.venv has dvc {v.stdout.strip()}, not 3.x: reinstalling")
        except BenchError as e:
            log(f"bench/.venv's dvc does not work ({e}); reinstalling")
    if not (VENV / "bin" / "python").exists():
        log("creating bench/.venv …")
        try:
            run_cmd([sys.executable, "-m", "venv", str(VENV)], REPO, timeout=300)
        except BenchError as e:
            raise BenchError(
                f"cannot create the virtualenv bench/.venv: {e}\n"
                "  = hint: install python3-venv, or remove bench/.venv and retry"
            ) from e
    errors = []
    for spec in (DVC_SPEC, DVC_FALLBACK_SPEC):
        log(f"pip install '{spec}' into bench/.venv (a minute or two) …")
        try:
            run_cmd(
                [str(pip), "install", "--disable-pip-version-check", "-q", spec],
                REPO,
                timeout=timeout,
            )
            break
        except BenchError as e:
            errors.append(str(e))
    else:
        raise BenchError(
            "cannot install DVC into bench/.venv:\n"
            + "\n".join(errors)
            + "\n  = hint: check network access to PyPI, or install it by hand: "
            f"bench/.venv/bin/pip install '{DVC_SPEC}'"
        )
    v = run_cmd([str(dvc), "--version"], REPO, env=dvc_env_base(), timeout=120)
    return dvc, v.stdout.strip()


def ensure_b3sum(timeout: float) -> tuple[Path, str]:
    local = TOOLS / "bin" / "b3sum"
    found = Path(p) if (p := shutil.which("b3sum")) else None
    if found is None and not local.exists():
        log("cargo install b3sum --root bench/.tools …")
        run_cmd(
            ["cargo", "install", "--locked", "b3sum", "--root", str(TOOLS)],
            REPO,
            timeout=timeout,
        )
    b3 = found or local
    v = run_cmd([str(b3), "--version"], REPO, timeout=60)
    return b3, v.stdout.strip()


def ensure_sluice(run_dir: Path, timeout: float) -> tuple[Path, str, str]:
    if os.environ.get("SLUICE_BIN"):
        src = Path(os.environ["SLUICE_BIN"]).resolve()
        if not src.is_file():
            raise BenchError(f"SLUICE_BIN={src} is not a file")
    else:
        log("cargo build --release …")
        run_cmd(["cargo", "build", "--release", "--bin", "sluice"], REPO, timeout=timeout)
        src = REPO / "target" / "release" / "sluice"
    # A private copy: target/ is shared, and a rebuild in the middle of a run would mix builds.
    dst = run_dir / "sluice"
    shutil.copy2(src, dst)
    version = run_cmd([str(dst), "--version"], REPO, timeout=60).stdout.strip()
    rev = "unknown"
    try:
        rev = run_cmd(["git", "rev-parse", "--short", "HEAD"], REPO, timeout=60).stdout.strip()
        dirty = run_cmd(["git", "status", "--porcelain", "--untracked-files=no"], REPO, timeout=60)
        if dirty.stdout.strip():
            rev += "+dirty"
    except BenchError:
        pass
    if os.environ.get("SLUICE_BIN"):
        rev += f", binary from SLUICE_BIN={src}"
    return dst, version, rev


def dvc_env_base() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["DVC_NO_ANALYTICS"] = "1"
    env["GIT_TERMINAL_PROMPT"] = "0"
    env.pop("VIRTUAL_ENV", None)
    return env


# --------------------------------------------------------------------------------------------
# Workloads


@dataclass
class Workload:
    """One pipeline, written both ways, plus how to prepare its workspace."""

    name: str
    dvc_yaml: str
    sluice_yaml: str
    outputs: list[str]  # workspace-relative files the first run must create
    prepare: object  # callable(ws: Path) that puts the inputs in place


def chain(n: int) -> tuple[str, str, list[str]]:
    dvc = ["stages:"]
    sl = ["version: 1", f"name: chain{n}", "stages:"]
    outs = []
    for i in range(n):
        out = f"out/s{i}.txt"
        outs.append(out)
        prev = "data/raw.txt" if i == 0 else f"out/s{i - 1}.txt"
        dvc += [
            f"  s{i}:",
            f"    cmd: cat {prev} > {out} && echo {i} >> {out}",
            "    deps:",
            f"    - {prev}",
            "    outs:",
            f"    - {out}",
        ]
        src = "data/raw.txt" if i == 0 else f"${{{{ stages.s{i - 1}.outputs.out }}}}"
        sl += [
            f"  s{i}:",
            f"    run: cat ${{{{ inputs.prev }}}} > ${{{{ outputs.out }}}} && echo {i} >> ${{{{ outputs.out }}}}",
            "    inputs:",
            f"      prev: {src}",
            "    outputs:",
            f"      out: {out}",
        ]
    return "\n".join(dvc) + "\n", "\n".join(sl) + "\n", outs


def fanout(n: int) -> tuple[str, str, list[str]]:
    dvc = ["stages:"]
    sl = ["version: 1", f"name: fanout{n}", "stages:"]
    outs = []
    for i in range(n):
        out = f"out/s{i}.txt"
        outs.append(out)
        prev = "data/raw.txt" if i == 0 else "out/s0.txt"
        dvc += [
            f"  s{i}:",
            f"    cmd: cat {prev} > {out} && echo {i} >> {out}",
            "    deps:",
            f"    - {prev}",
            "    outs:",
            f"    - {out}",
        ]
        src = "data/raw.txt" if i == 0 else "${{ stages.s0.outputs.out }}"
        sl += [
            f"  s{i}:",
            f"    run: cat ${{{{ inputs.prev }}}} > ${{{{ outputs.out }}}} && echo {i} >> ${{{{ outputs.out }}}}",
            "    inputs:",
            f"      prev: {src}",
            "    outputs:",
            f"      out: {out}",
        ]
    return "\n".join(dvc) + "\n", "\n".join(sl) + "\n", outs


def one_stage(name: str, dep: str, cmd_dvc: str, cmd_sluice: str) -> tuple[str, str, list[str]]:
    out = "out/result.txt"
    dvc = (
        "stages:\n"
        "  measure:\n"
        f"    cmd: {cmd_dvc}\n"
        "    deps:\n"
        f"    - {dep}\n"
        "    outs:\n"
        f"    - {out}\n"
    )
    sl = (
        "version: 1\n"
        f"name: {name}\n"
        "stages:\n"
        "  measure:\n"
        f"    run: {cmd_sluice}\n"
        "    inputs:\n"
        f"      data: {dep}\n"
        "    outputs:\n"
        f"      out: {out}\n"
    )
    return dvc, sl, [out]


def prepare_raw(ws: Path) -> None:
    (ws / "data").mkdir(parents=True, exist_ok=True)
    (ws / "data" / "raw.txt").write_text("raw input\n")


def prepare_big(big: Path):
    def prepare(ws: Path) -> None:
        (ws / "data").mkdir(parents=True, exist_ok=True)
        os.link(big, ws / "data" / BIG_NAME)  # the same bytes, no copy

    return prepare


def prepare_dir(ws: Path) -> None:
    root = ws / "data" / "files"
    per = DIR_FILES // DIR_FANOUT
    for d in range(DIR_FANOUT):
        sub = root / f"d{d:03}"
        sub.mkdir(parents=True)
        for f in range(per):
            i = d * per + f
            (sub / f"f{f:03}.txt").write_text(f"file {i:05}\n" + "x" * 88 + "\n")
    # Old mtimes, as files on disk usually have (and none "racy" to either tool).
    old = time.time() - 3600
    for p in root.rglob("*"):
        os.utime(p, (old, old))


def make_workspace(base: Path, tag: str, wl: Workload, tool: str, tools: Tools, scm: bool) -> Path:
    ws = Path(tempfile.mkdtemp(prefix=f"{tag}-{tool}-", dir=base))
    (ws / "out").mkdir()
    wl.prepare(ws)
    if tool == "sluice":
        (ws / ".sluice").mkdir()  # the workspace root (else sluice would find the repo's)
        (ws / "flow.yaml").write_text(wl.sluice_yaml)
    else:
        env = tools.dvc_env
        if scm:
            run_cmd(["git", "init", "-q"], ws, env=env, timeout=120)
            run_cmd([str(tools.dvc), "init", "-q"], ws, env=env, timeout=300)
        else:
            run_cmd([str(tools.dvc), "init", "-q", "--no-scm"], ws, env=env, timeout=300)
        run_cmd([str(tools.dvc), "config", "core.analytics", "false"], ws, env=env, timeout=120)
        run_cmd(
            [str(tools.dvc), "config", "core.site_cache_dir", str(ws / ".dvc-site")],
            ws,
            env=env,
            timeout=120,
        )
        (ws / "dvc.yaml").write_text(wl.dvc_yaml)
    return ws


# --------------------------------------------------------------------------------------------
# Tool drivers: each returns its timings and checks the outcome


def sluice_json(tools: Tools, ws: Path, verb: str, timeout: float) -> tuple[float, dict]:
    r = run_cmd([str(tools.sluice), verb, "flow.yaml", "--json"], ws, timeout=timeout)
    try:
        return r.seconds, json.loads(r.stdout)
    except json.JSONDecodeError as e:
        raise BenchError(f"sluice {verb} --json printed no JSON ({e}) in {ws}:\n{r.stdout[:2000]}")


def check_sluice_outcome(doc: dict, ws: Path, what: str, expect: str) -> None:
    stages = doc.get("stages", [])
    bad = [s["name"] for s in stages if s.get("status") != expect]
    if not stages or bad:
        raise BenchError(
            f"sanity check failed: after {what} in {ws}, expected every stage {expect!r}, "
            f"but {len(bad)} of {len(stages)} are not: {bad[:10]}"
        )


def check_outputs(ws: Path, outputs: list[str], tool: str) -> None:
    missing = [o for o in outputs if not (ws / o).is_file()]
    if missing:
        raise BenchError(f"sanity check failed: {tool} first run left no {missing[:5]} in {ws}")


UP_TO_DATE = "Data and pipelines are up to date."


def dvc(tools: Tools, ws: Path, *args: str, timeout: float) -> Result:
    return run_cmd([str(tools.dvc), *args], ws, env=tools.dvc_env, timeout=timeout)


# --------------------------------------------------------------------------------------------
# Measurements


@dataclass
class Samples:
    values: dict[tuple[str, str], list[float]] = field(default_factory=dict)  # (measure, tool)
    notes: list[str] = field(default_factory=list)

    def add(self, measure: str, tool: str, seconds: float) -> None:
        self.values.setdefault((measure, tool), []).append(seconds)

    def median(self, measure: str, tool: str) -> float | None:
        v = self.values.get((measure, tool))
        return statistics.median(v) if v else None

    def count(self, measure: str, tool: str) -> int:
        return len(self.values.get((measure, tool), []))


def bench_pipeline(
    wl: Workload,
    tools: Tools,
    base: Path,
    reps: dict[str, int],
    args: argparse.Namespace,
    touch_status: bool = False,
) -> Samples:
    """Per repetition, in a fresh workspace: first run, no-op re-run, status (no-op), and, with
    `touch_status`, status after touching every input file."""
    s = Samples()
    for tool in ("sluice", "dvc"):
        n = reps.get(tool, 0)
        for rep in range(n):
            ws = make_workspace(base, wl.name, wl, tool, tools, args.dvc_scm)
            try:
                line = []
                if tool == "sluice":
                    t, doc = sluice_json(tools, ws, "run", args.timeout)
                    if not doc.get("ok"):
                        raise BenchError(f"sluice run failed in {ws}: {json.dumps(doc)[:2000]}")
                    check_outputs(ws, wl.outputs, tool)
                    check_sluice_outcome(doc, ws, "the first run", "ran")
                    s.add("first run", tool, t)
                    line.append(f"first {fmt_time(t)}")
                    t, doc = sluice_json(tools, ws, "run", args.timeout)
                    check_sluice_outcome(doc, ws, "the no-op re-run", "cached")
                    s.add("no-op re-run", tool, t)
                    line.append(f"no-op {fmt_time(t)} (hashed {doc.get('hashed', {}).get('files')} files)")
                    t, doc = sluice_json(tools, ws, "status", args.timeout)
                    if not doc.get("up_to_date"):
                        raise BenchError(f"sluice status says stale after a no-op run in {ws}")
                    s.add("status", tool, t)
                    line.append(f"status {fmt_time(t)}")
                    if touch_status:
                        touch_all(ws / "data")
                        t, doc = sluice_json(tools, ws, "status", args.timeout)
                        if not doc.get("up_to_date"):
                            raise BenchError(f"sluice status says stale after `touch` in {ws}")
                        s.add("status after touch", tool, t)
                        hashed = doc.get("hashed", {}).get("files")
                        line.append(f"status after touch {fmt_time(t)} (hashed {hashed} files)")
                else:
                    r = dvc(tools, ws, "repro", timeout=args.timeout)
                    check_outputs(ws, wl.outputs, tool)
                    s.add("first run", tool, r.seconds)
                    line.append(f"first {fmt_time(r.seconds)}")
                    r = dvc(tools, ws, "repro", timeout=args.timeout)
                    s.add("no-op re-run", tool, r.seconds)
                    line.append(f"no-op {fmt_time(r.seconds)}")
                    r = dvc(tools, ws, "status", timeout=args.timeout)
                    if UP_TO_DATE not in r.stdout:
                        raise BenchError(f"dvc status says stale after a no-op run in {ws}:\n{r.stdout[:2000]}")
                    s.add("status", tool, r.seconds)
                    line.append(f"status {fmt_time(r.seconds)}")
                    if touch_status:
                        touch_all(ws / "data")
                        r = dvc(tools, ws, "status", timeout=args.timeout)
                        if UP_TO_DATE not in r.stdout:
                            raise BenchError(f"dvc status says stale after `touch` in {ws}:\n{r.stdout[:2000]}")
                        s.add("status after touch", tool, r.seconds)
                        line.append(f"status after touch {fmt_time(r.seconds)}")
                log(f"  [{wl.name}] {tool:<6} {rep + 1}/{n}: " + ", ".join(line))
            finally:
                if not args.keep:
                    shutil.rmtree(ws, ignore_errors=True)
    return s


def touch_all(root: Path) -> None:
    """`touch` every file: mtime (and ctime) now, content unchanged."""
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            os.utime(os.path.join(dirpath, f))
    time.sleep(0.05)  # past both tools' "racy timestamp" windows


def bench_hash(big: Path, tools: Tools, base: Path, reps: int, dvc_first: float | None, args) -> dict:
    """b3sum on the 1 GiB file against sluice's first hashing of it (`sluice status` in a fresh
    workspace whose stage reads the file). The page cache is warm for both, and the two are
    interleaved so that load from other processes on the machine hits both alike."""
    size = big.stat().st_size
    run_cmd([str(tools.b3sum), str(big)], base, timeout=args.timeout)  # warm the page cache
    _, sl_yaml, _ = one_stage("hash1g", f"data/{BIG_NAME}", "", "wc -c < ${{ inputs.data }} > ${{ outputs.out }}")
    wl = Workload("hash-1g", "", sl_yaml, [], prepare_big(big))
    b3, sl = [], []
    for _ in range(reps):
        b3.append(run_cmd([str(tools.b3sum), str(big)], base, timeout=args.timeout).seconds)
        ws = make_workspace(base, "hash", wl, "sluice", tools, False)
        try:
            t, doc = sluice_json(tools, ws, "status", args.timeout)
            hashed = doc.get("hashed", {}).get("bytes", 0)
            if hashed < size:
                raise BenchError(
                    f"sluice status on a fresh workspace hashed {hashed} bytes, not the "
                    f"{size} of {BIG_NAME}: the hashing measurement would be wrong ({ws})"
                )
            sl.append(t)
        finally:
            if not args.keep:
                shutil.rmtree(ws, ignore_errors=True)
    b3_s, sl_s = statistics.median(b3), statistics.median(sl)
    log(
        f"  [hash-1g] b3sum {fmt_time(b3_s)} (min {fmt_time(min(b3))}), "
        f"sluice status on a fresh workspace {fmt_time(sl_s)} (min {fmt_time(min(sl))}), ×{reps}"
    )
    return {"size": size, "b3sum": b3_s, "sluice": sl_s, "dvc": dvc_first, "reps": reps}


# --------------------------------------------------------------------------------------------
# Data


def ensure_big_file() -> Path:
    DATA.mkdir(parents=True, exist_ok=True)
    big = DATA / BIG_NAME
    if big.exists() and big.stat().st_size == GIB:
        return big
    log(f"generating {big.relative_to(REPO)} (1 GiB of random bytes, once) …")
    tmp = big.with_suffix(".tmp")
    chunk = 8 << 20
    with open(tmp, "wb") as f:
        for _ in range(GIB // chunk):
            f.write(os.urandom(chunk))
    os.replace(tmp, big)
    old = time.time() - 3600
    os.utime(big, (old, old))
    return big


# --------------------------------------------------------------------------------------------
# Report


def fmt_time(s: float | None) -> str:
    if s is None:
        return "—"
    if s < 1:
        return f"{s * 1000:.1f} ms" if s < 0.1 else f"{s * 1000:.0f} ms"
    return f"{s:.2f} s" if s < 10 else f"{s:.1f} s"


def fmt_x(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:.0f}×" if x >= 10 else f"{x:.1f}×"


@dataclass
class Row:
    workload: str
    measure: str
    dvc: str
    sluice: str
    speedup: str
    target: str = ""
    met: str = ""


def time_rows(workload: str, s: Samples, measures: list[str], targets: dict[str, object]) -> list[Row]:
    rows = []
    for m in measures:
        d, sl = s.median(m, "dvc"), s.median(m, "sluice")
        x = d / sl if d is not None and sl else None
        target, met = "", ""
        t = targets.get(m)
        if isinstance(t, float):  # a speed-up target
            target = f"≥ {t:.0f}×"
            met = "n/a (no DVC)" if x is None else ("yes" if x >= t else "**NO**")
        elif isinstance(t, str) and t == "abs":  # sluice under T_STATUS_MS
            target = f"sluice < {T_STATUS_MS:.0f} ms"
            met = "—" if sl is None else ("yes" if sl * 1000 < T_STATUS_MS else "**NO**")
        rows.append(
            Row(
                workload,
                m,
                fmt_time(d) if d is not None else "skipped",
                fmt_time(sl),
                fmt_x(x),
                target,
                met,
            )
        )
    return rows


def hash_rows(h: dict) -> list[Row]:
    mb = h["size"] / 1e6
    b3, sl, dv = mb / h["b3sum"], mb / h["sluice"], (mb / h["dvc"] if h["dvc"] else None)
    ratio = sl / b3
    return [
        Row(
            "hash 1 GiB",
            "first hashing, MB/s (b3sum: " + f"{b3:.0f} MB/s)",
            f"{dv:.0f} MB/s¹" if dv else "—",
            f"{sl:.0f} MB/s",
            fmt_x(sl / dv) if dv else "—",
            f"≥ {T_HASH:.0%} of b3sum",
            f"{'yes' if ratio >= T_HASH else '**NO**'} ({ratio:.0%})",
        )
    ]


def render(rows: list[Row]) -> str:
    head = ["workload", "measure", "dvc", "sluice", "speed-up (dvc/sluice)", "target", "met"]
    cells = [head] + [[r.workload, r.measure, r.dvc, r.sluice, r.speedup, r.target, r.met] for r in rows]
    width = [max(len(c[i]) for c in cells) for i in range(len(head))]
    right = {2, 3, 4}

    def line(c: list[str]) -> str:
        return "| " + " | ".join(
            (c[i].rjust(width[i]) if i in right else c[i].ljust(width[i])) for i in range(len(c))
        ) + " |"

    sep = "|" + "|".join(
        ("-" * (width[i] + 1) + ":") if i in right else ("-" * (width[i] + 2)) for i in range(len(head))
    ) + "|"
    return "\n".join([line(head), sep] + [line(c) for c in cells[1:]])


# --------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: skip the 200-stage DVC cases and the 1 GiB case")
    p.add_argument("--reps", type=int, help="repetitions for sluice and for the fast DVC cases (default 5; --quick: 3)")
    p.add_argument("--dvc-reps", type=int, help="repetitions for the slow DVC cases: 200 stages, 1 GiB, 10,000 files (default 3; --quick: 1)")
    p.add_argument("--sizes", default="10,50,200", help="pipeline sizes (default 10,50,200)")
    p.add_argument("--no-dvc-scm", dest="dvc_scm", action="store_false", help="`dvc init --no-scm` instead of `git init` + `dvc init`")
    p.add_argument("--timeout", type=float, default=900, help="seconds any one command may take (default 900)")
    p.add_argument("--keep", action="store_true", help="keep the work directories under bench/work/")
    p.add_argument("--results", type=Path, help="where to write the table (default bench/results/engine-<date>.md)")
    a = p.parse_args()
    if a.reps is None:
        a.reps = 3 if a.quick else 5
    if a.dvc_reps is None:
        a.dvc_reps = 1 if a.quick else 3
    a.sizes = [int(x) for x in a.sizes.split(",") if x.strip()]
    if a.reps < 1 or a.dvc_reps < 0:
        p.error("--reps must be at least 1 and --dvc-reps at least 0")
    return a


def clean_stale_runs() -> None:
    """Removes work directories left by earlier runs that are no longer alive."""
    if not WORK.exists():
        return
    for d in WORK.glob("run-*"):
        try:
            pid = int(d.name.rsplit("-", 1)[1])
            os.kill(pid, 0)
            continue  # still running
        except (ValueError, IndexError):
            pass
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        shutil.rmtree(d, ignore_errors=True)


def main() -> int:
    args = parse_args()
    started = time.time()
    WORK.mkdir(parents=True, exist_ok=True)
    clean_stale_runs()
    run_dir = WORK / f"run-{dt.datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}"
    run_dir.mkdir()
    load_before = os.getloadavg()
    try:
        dvc_bin, dvc_version = ensure_dvc(args.timeout)
        b3, b3_version = ensure_b3sum(args.timeout)
        sl_bin, sl_version, sl_rev = ensure_sluice(run_dir, args.timeout)
        tools = Tools(sl_bin, sl_version, sl_rev, dvc_bin, dvc_version, b3, b3_version, dvc_env_base())
        log(f"tools: {sl_version} ({sl_rev}), dvc {dvc_version}, {b3_version}")

        rows: list[Row] = []
        fast = args.reps
        slow = args.dvc_reps
        for kind, gen in (("chain", chain), ("fan-out", fanout)):
            for n in args.sizes:
                dvc_n = 0 if (args.quick and n >= 200) else (slow if n >= 200 else fast)
                d_yaml, s_yaml, outs = gen(n)
                wl = Workload(f"{kind}-{n}", d_yaml, s_yaml, outs, prepare_raw)
                log(f"{wl.name}: sluice ×{fast}, dvc ×{dvc_n}")
                s = bench_pipeline(wl, tools, run_dir, {"sluice": fast, "dvc": dvc_n}, args)
                targets = {}
                if n == 200:
                    targets = {"first run": T_FIRST_200, "no-op re-run": T_NOOP_200, "status": T_NOOP_200}
                rows += time_rows(f"{kind}, {n} stages", s, ["first run", "no-op re-run", "status"], targets)

        hash_info = None
        if not args.quick:
            big = ensure_big_file()
            d_yaml, s_yaml, outs = one_stage(
                "big1g",
                f"data/{BIG_NAME}",
                f"wc -c < data/{BIG_NAME} > out/result.txt",
                "wc -c < ${{ inputs.data }} > ${{ outputs.out }}",
            )
            wl = Workload("file-1g", d_yaml, s_yaml, outs, prepare_big(big))
            log(f"{wl.name}: sluice ×{fast}, dvc ×{slow}")
            s = bench_pipeline(wl, tools, run_dir, {"sluice": fast, "dvc": slow}, args)
            rows += time_rows("1 GiB input file", s, ["first run", "no-op re-run", "status"], {"status": "abs"})
            log("hash-1g: b3sum and sluice")
            hash_info = bench_hash(big, tools, run_dir, max(fast, 10), s.median("first run", "dvc"), args)
            rows += hash_rows(hash_info)

        d_yaml, s_yaml, outs = one_stage(
            "dir10k",
            "data/files",
            "find data/files -type f | wc -l > out/result.txt",
            "find ${{ inputs.data }} -type f | wc -l > ${{ outputs.out }}",
        )
        wl = Workload("dir-10k", d_yaml, s_yaml, outs, prepare_dir)
        log(f"{wl.name}: sluice ×{fast}, dvc ×{slow}")
        s = bench_pipeline(wl, tools, run_dir, {"sluice": fast, "dvc": slow}, args, touch_status=True)
        rows += time_rows(
            "10,000-file directory",
            s,
            ["first run", "no-op re-run", "status", "status after touch"],
            {"status": "abs"},
        )

        table = render(rows)
        load_after = os.getloadavg()
        elapsed = time.time() - started
        today = dt.date.today().isoformat()
        header = [
            f"# sluice vs DVC: engine benchmark, {today}{' (quick)' if args.quick else ''}",
            "",
            f"- sluice: {sl_version} (git {sl_rev}), `-j` default ({os.cpu_count()} cores)",
            f"- dvc: {dvc_version} ({'git + dvc init' if args.dvc_scm else 'dvc init --no-scm'})"
            f", b3sum: {b3_version}",
            f"- machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}"
            f"; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after",
            f"- medians of {fast} runs (sluice and small DVC cases) and {slow} runs "
            f"(DVC: 200 stages, 1 GiB, 10,000 files); each run in a fresh workspace; "
            f"wall time of the whole command; page cache warm; total {elapsed / 60:.1f} min",
            "",
        ]
        footer = [
            "",
            "Measures: *first run* = `dvc repro` / `sluice run` in a fresh workspace; "
            "*no-op re-run* = the same again right after; *status* = `dvc status` / `sluice status` "
            "after that; *status after touch* = status after `touch`ing every input file "
            "(mtime changes, content does not).",
        ]
        if hash_info:
            footer.append(
                f"Hashing: b3sum on the 1 GiB file against `sluice status` in a fresh workspace, interleaved, median of {hash_info['reps']} "
                "(its stage reads the file, so the command is dominated by hashing it); "
                "¹ DVC: its first `dvc repro` of that stage (MD5, including start-up)."
            )
        doc = "\n".join(header) + "\n" + table + "\n" + "\n".join(footer) + "\n"
        print(doc)
        out = args.results or RESULTS / f"engine-{today}{'-quick' if args.quick else ''}.md"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(doc)
        log(f"wrote {out}")
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
