#!/usr/bin/env python3
"""split: assign each row to train / validation / test by a hash of its id and a seed, so that
adding data never moves an existing row to another split. Writes OUT_DIR/{train,validation,test}.jsonl.
Usage: split.py IN.jsonl OUT_DIR SEED VALIDATION_PCT TEST_PCT"""

import hashlib
import sys
from pathlib import Path

src, out_dir, seed = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
val_pct, test_pct = int(sys.argv[4]), int(sys.argv[5])
out_dir.mkdir(parents=True, exist_ok=True)
files = {name: open(out_dir / f"{name}.jsonl", "w", encoding="utf-8", newline="\n")
         for name in ("train", "validation", "test")}
counts = dict.fromkeys(files, 0)
with open(src, encoding="utf-8") as f:
    for line in f:
        row_id = line.split('"id": "', 1)[1].split('"', 1)[0]
        # Augmented or duplicated rows share their source id's prefix: keep them together.
        group = row_id.split("-", 1)[0]
        bucket = int(hashlib.sha256(f"{seed}:{group}".encode()).hexdigest(), 16) % 100
        name = "test" if bucket < test_pct else "validation" if bucket < test_pct + val_pct else "train"
        files[name].write(line)
        counts[name] += 1
for fh in files.values():
    fh.close()
print(" ".join(f"{k}={v}" for k, v in counts.items()))
