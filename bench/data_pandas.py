#!/usr/bin/env python3
"""The pandas side of the data benchmark (bench/data.py): the same work as sluice's
`collect` → `clean` (exact dedup) → `clean` (normalised dedup) → `split` workflow, as one
vectorised pandas script.

    bench/.venv/bin/python bench/data_pandas.py INPUT.jsonl OUT_DIR [--min-chars 12]
        [--max-chars 1500] [--seed 7] [--pattern '\\$[A-Z]{1,5}\\b']

Reads the JSON Lines file, maps `question`/`answer` to `input`/`output`, then, in sluice's
order: NFC + whitespace normalisation, regex strip (whitespace normalised again where something
was removed), min/max character filters on both fields (a row counts against the first filter
it fails), exact dedup, normalised dedup (NFKC, lowercase, no punctuation, single spaces),
and a seeded 80/10/10 split written as three zstd Parquet files. Prints one JSON object on
stdout: the row counts after every step (to check against sluice's stats.json) and the time of
each step.

Written for pandas 3 with pyarrow-backed strings (the default `str` dtype there): every string
operation runs in pyarrow's compute kernels. Two details keep it that way, with the same results
as sluice on this benchmark's data:
- whitespace is spelled out (`[ \\t\\f\\v]`, `[\\t\\n\\v\\f\\r ]`) rather than `\\s`: pandas
  sends patterns with `\\s` to Python's `re`, one string at a time, because RE2's `\\s` differs
  from Python's on exotic whitespace (the generated data has none);
- the ticker pattern ends in `\\b`, which pandas also hands to Python's `re` when the column holds
  non-ASCII text, so it runs only on the rows that contain a `$` (found with a plain substring
  search), as a careful pandas user would write it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

T0 = time.perf_counter()
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow  # noqa: E402,F401  (the string backend and the Parquet writer)

T_IMPORT = time.perf_counter() - T0

# Whitespace runs that are not already one space (a lone space needs no replacing, and most
# matches would be lone spaces): inside a line, and anywhere. ASCII whitespace only, spelled out.
INLINE_WS = r"[ \t\f\v]{2,}|[\t\f\v]"
ANY_WS = r"[\t\n\v\f\r ]{2,}|[\t\n\v\f\r]"


def normalize_ws(s: pd.Series) -> pd.Series:
    """sluice's whitespace rule: CRLF/CR → LF; inside a line every whitespace run → one space;
    lines trimmed; at most one blank line in a row; the text trimmed."""
    s = s.str.replace("\r\n", "\n", regex=False).str.replace("\r", "\n", regex=False)
    s = s.str.replace(INLINE_WS, " ", regex=True)
    s = s.str.replace(r" ?\n ?", "\n", regex=True)
    s = s.str.replace(r"\n{3,}", "\n\n", regex=True)
    return s.str.strip()


def dedup_key(s: pd.Series) -> pd.Series:
    """sluice's normalised form for dedup: NFKC, lowercase, punctuation and symbols removed
    (without splitting words), whitespace runs → one space, trimmed."""
    s = s.str.normalize("NFKC").str.lower()
    s = s.str.replace(r"[^\p{L}\p{N}\t\n\v\f\r ]+", "", regex=True)  # RE2 syntax: runs in pyarrow
    s = s.str.replace(ANY_WS, " ", regex=True)
    return s.str.strip()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("input")
    p.add_argument("out_dir")
    p.add_argument("--min-chars", type=int, default=12)
    p.add_argument("--max-chars", type=int, default=1500)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--pattern", default=r"\$[A-Z]{1,5}\b")
    a = p.parse_args()

    steps: dict[str, float] = {}
    counts: dict[str, int] = {}
    t = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        steps[name] = now - t
        t = now

    # collect: read, map fields, keep provenance
    df = pd.read_json(a.input, lines=True, engine="pyarrow")
    df = df.rename(columns={"question": "input", "answer": "output"})
    df = df[["id", "input", "output"]]
    df["source"] = a.input
    df["source_row"] = np.arange(1, len(df) + 1, dtype=np.uint64)
    counts["collect"] = len(df)
    lap("read + map")

    # normalize: NFC + whitespace
    changed = np.zeros(len(df), dtype=bool)
    for col in ("input", "output"):
        new = normalize_ws(df[col].str.normalize("NFC"))
        changed |= (new != df[col]).to_numpy()
        df[col] = new
    counts["normalize_changed"] = int(changed.sum())
    lap("normalize")

    # strip: remove matches, normalise whitespace again where something was removed
    changed = np.zeros(len(df), dtype=bool)
    for col in ("input", "output"):
        s = df[col]
        has = s.str.contains("$", regex=False).to_numpy()
        sub = s[has]
        new = sub.str.replace(a.pattern, "", regex=True)
        hit = (new != sub).to_numpy()
        new = normalize_ws(new)
        df.loc[has, col] = new
        rows = np.flatnonzero(has)[hit]
        changed[rows] = True
    counts["strip_changed"] = int(changed.sum())
    lap("strip")

    # length filters, on input and output; a row counts against the first one it fails
    lin = df["input"].str.len().to_numpy()
    lout = df["output"].str.len().to_numpy()
    short = (lin < a.min_chars) | (lout < a.min_chars)
    long = ~short & ((lin > a.max_chars) | (lout > a.max_chars))
    counts["min_chars_removed"] = int(short.sum())
    counts["max_chars_removed"] = int(long.sum())
    df = df[~(short | long)]
    counts["after_filters"] = len(df)
    lap("length filters")

    # exact dedup, keeping the first
    dup = df.duplicated(subset=["input", "output"], keep="first").to_numpy()
    counts["dedup_exact_removed"] = int(dup.sum())
    df = df[~dup]
    counts["after_exact"] = len(df)
    lap("exact dedup")

    # normalised dedup, keeping the first
    keys = pd.DataFrame({"i": dedup_key(df["input"]), "o": dedup_key(df["output"])})
    dup = keys.duplicated(keep="first").to_numpy()
    counts["dedup_normalized_removed"] = int(dup.sum())
    df = df[~dup]
    counts["after_normalized"] = len(df)
    lap("normalised dedup")

    # split: shuffle with the seed, each row goes where the middle of its slot falls on [0, 1)
    n = len(df)
    order = np.random.default_rng(a.seed).permutation(n)
    middle = (np.arange(n) + 0.5) / n
    slot_part = np.where(middle < 0.8, 0, np.where(middle < 0.8 + 0.1, 1, 2)).astype(np.int8)
    part = np.empty(n, dtype=np.int8)
    part[order] = slot_part
    lap("split")
    for k, name in enumerate(("train", "validation", "test")):
        rows = df[part == k]  # keeps the input order
        rows.to_parquet(f"{a.out_dir}/{name}.parquet", engine="pyarrow", compression="zstd", index=False)
        counts[name] = len(rows)
    lap("write parquet")

    json.dump(
        {"counts": counts, "steps": steps, "import_s": T_IMPORT, "total_s": time.perf_counter() - T0,
         "versions": {"pandas": pd.__version__, "numpy": np.__version__, "pyarrow": pyarrow.__version__}},
        sys.stdout,
    )
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
