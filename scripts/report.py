#!/usr/bin/env python3
"""report: a Markdown summary of the cleaning statistics and the split sizes.
Usage: report.py STATS.json SPLIT_DIR OUT.md"""

import json
import sys
from pathlib import Path

stats = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
split_dir, out = Path(sys.argv[2]), Path(sys.argv[3])
lines = ["# Quickstart data report", "", "| cleaning step | rows |", "| --- | ---: |"]
for key in ("rows_in", "tickers_stripped", "dropped_empty_output", "dropped_short_input",
            "dropped_duplicate", "rows_out"):
    lines.append(f"| {key.replace('_', ' ')} | {stats[key]} |")
lines += ["", "| split | rows |", "| --- | ---: |"]
for name in ("train", "validation", "test"):
    n = sum(1 for _ in open(split_dir / f"{name}.jsonl", encoding="utf-8"))
    lines.append(f"| {name} | {n} |")
out.write_text("\n".join(lines) + "\n", encoding="utf-8")
print(f"wrote {out}")
