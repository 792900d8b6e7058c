#!/usr/bin/env python3
"""clean: strip stock tickers, normalise whitespace, drop empty outputs and short inputs, and
remove duplicates after normalising case and punctuation. Writes the rows kept and a stats file.
Usage: clean.py IN.jsonl OUT.jsonl STATS.json MIN_CHARS"""

import json
import re
import string
import sys

src, out, stats_path, min_chars = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
TICKER = re.compile(r"\s?\$[A-Z]{1,5}\b")
stats = {"rows_in": 0, "tickers_stripped": 0, "dropped_empty_output": 0,
         "dropped_short_input": 0, "dropped_duplicate": 0}
seen = set()
kept = []
with open(src, encoding="utf-8") as f:
    for line in f:
        r = json.loads(line)
        stats["rows_in"] += 1
        for key in ("input", "output"):
            text, n = TICKER.subn("", r[key])
            stats["tickers_stripped"] += n
            r[key] = " ".join(text.split())
        if not r["output"]:
            stats["dropped_empty_output"] += 1
            continue
        if len(r["input"]) < min_chars:
            stats["dropped_short_input"] += 1
            continue
        norm = r["input"].lower().translate(str.maketrans("", "", string.punctuation))
        norm = " ".join(norm.split()) + "\t" + r["output"].lower()
        if norm in seen:
            stats["dropped_duplicate"] += 1
            continue
        seen.add(norm)
        kept.append(r)
stats["rows_out"] = len(kept)
with open(out, "w", encoding="utf-8", newline="\n") as f:
    for r in kept:
        f.write(json.dumps(r, ensure_ascii=False) + "\n")
with open(stats_path, "w", encoding="utf-8", newline="\n") as f:
    json.dump(stats, f, indent=2, sort_keys=True)
    f.write("\n")
print(json.dumps(stats, sort_keys=True))
