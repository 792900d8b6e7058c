#!/usr/bin/env python3
"""collect: every *.jsonl file of a directory → one JSON Lines file in the example schema
(`id`, `input`, `output`, `source`). Usage: collect.py SRC_DIR OUT.jsonl"""

import json
import sys
from pathlib import Path

src, out = Path(sys.argv[1]), Path(sys.argv[2])
rows = 0
with open(out, "w", encoding="utf-8", newline="\n") as f:
    for path in sorted(src.glob("*.jsonl")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError as e:
                sys.exit(f"{path}:{n}: malformed JSON: {e}")
            f.write(json.dumps({"id": r["id"], "input": r["question"], "output": r["answer"],
                                "source": path.name}, ensure_ascii=False) + "\n")
            rows += 1
print(f"collected {rows} rows")
