#!/usr/bin/env python3
"""report: a Markdown summary of the data stages' stats.json files.
Usage: report.py OUT.md STATS.json..."""

import json
import sys
from pathlib import Path

out = Path(sys.argv[1])
lines = ["# Quickstart data report", ""]
for path in sys.argv[2:]:
    stats = json.loads(Path(path).read_text(encoding="utf-8"))
    stage = Path(path).parent.name
    lines += [f"## {stage}", "", "| measure | value |", "| --- | ---: |"]
    for key, value in stats.items():
        if isinstance(value, (int, float)):
            lines.append(f"| {key.replace('_', ' ')} | {value} |")
    for rule in stats.get("rules", []):
        name = rule.get("rule", "?")
        for key, value in rule.items():
            if key != "rule" and isinstance(value, (int, float)):
                lines.append(f"| {name}: {key} | {value} |")
    lines.append("")
out.parent.mkdir(parents=True, exist_ok=True)
out.write_text("\n".join(lines), encoding="utf-8")
print(f"wrote {out}")
