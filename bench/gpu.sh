#!/usr/bin/env bash
# GPU checks for a sluice built with `--features cuda`, on a machine with an NVIDIA GPU:
#   SLUICE_BIN=target/release/sluice bash bench/gpu.sh [report.md]
# It checks the device inventory (nvidia-smi, the CUDA driver through candle, CUDA_VISIBLE_DEVICES),
# placement of `run` stages on the GPU, plan-time errors for requests that can never fit, the
# quickstart with its train and evaluate stages on the GPU (and cached on a second run), whether
# GPU training is bit-exact, and training throughput beside PyTorch on the same GPU (when python3
# has torch). It prints a Markdown report and writes it to the file given (default
# gpu-report.md). GPU_ONLY=quickstart, classifier or train runs one section. Nothing is downloaded.
set -uo pipefail

BIN=$(realpath "${SLUICE_BIN:-target/release/sluice}")
REPORT=$(realpath -m "${1:-gpu-report.md}")
REPO=$(pwd)
W=$(mktemp -d)
PY=${PYTHON:-python3}
: >"$REPORT"

say() { printf '%s\n' "$*" | tee -a "$REPORT"; }
block() { say '```'; "$@" 2>&1 | tee -a "$REPORT"; local rc=${PIPESTATUS[0]}; say '```'; return "$rc"; }
ok() { say "- **ok**: $*"; }
bad() { say "- **FAILED**: $*"; FAILED=1; }
FAILED=0

# A Markdown table of a `sluice run --json` summary: each stage's status, device, time, the
# metrics named after the file, and its error if it failed.
stage_table() {
  "$PY" - "$@" <<'EOF' | tee -a "$REPORT"
import json, sys
d = json.load(open(sys.argv[1]))
names = set(sys.argv[2:])
print("| stage | status | device | ms | metrics |")
print("|---|---|---|--:|---|")
for s in d["stages"]:
    keep = {k: round(v, 4) for k, v in (s.get("metrics") or {}).items() if k in names}
    print(f"| {s['name']} | {s['status']} | {s.get('device', '')} | {s.get('duration_ms', '')} | {keep} {s.get('error') or ''} |")
EOF
}

say "# sluice GPU check, $(date -u +%Y-%m-%d)"
say
say "- sluice: $("$BIN" --version 2>&1)"
say "- GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -1)"
say

ONLY=${GPU_ONLY:-all}
if [ "$ONLY" = all ]; then
say "## Device inventory"
block "$BIN" devices
"$BIN" devices --json >"$W/devices.json" 2>&1
grep -q '"source": *"nvidia-smi"' "$W/devices.json" && ok "detected through nvidia-smi" || bad "nvidia-smi detection: $(cat "$W/devices.json")"
say "Without nvidia-smi on PATH (the CUDA driver through candle):"
block env PATH=/nonexistent "$BIN" devices
env PATH=/nonexistent "$BIN" devices --json >"$W/driver.json" 2>&1
grep -q '"source": *"cuda driver"' "$W/driver.json" && ok "detected through the CUDA driver" || bad "CUDA driver detection: $(cat "$W/driver.json")"
CUDA_VISIBLE_DEVICES= "$BIN" devices --json >"$W/hidden.json" 2>&1
grep -q '"gpus": *\[\]' "$W/hidden.json" && ok "an empty CUDA_VISIBLE_DEVICES hides every GPU" || bad "CUDA_VISIBLE_DEVICES= still lists GPUs: $(cat "$W/hidden.json")"
say

say "## Placement of run stages"
mkdir -p "$W/place" && cd "$W/place" || exit 1
PROBE='import os; import torch; print(os.environ.get("CUDA_VISIBLE_DEVICES"), os.environ.get("SLUICE_DEVICE"), torch.cuda.device_count(), torch.cuda.get_device_name(0))'
{
  echo "version: 1"
  echo "name: place"
  echo "stages:"
  for i in 1 2 3; do
    echo "  g$i:"
    echo "    run: $PY -c '$PROBE' > \${{ outputs.out }}"
    echo "    outputs: {out: out/g$i.txt}"
    echo "    resources: {gpu: 1}"
  done
} >place.yaml
if block "$BIN" run place.yaml --progress=plain; then
  for i in 1 2 3; do say "g$i saw: $(cat out/g$i.txt)"; done
  if grep -q '^0 gpu:0 1 ' out/g1.txt && grep -q '^0 gpu:0 1 ' out/g2.txt && grep -q '^0 gpu:0 1 ' out/g3.txt; then
    ok "each stage saw CUDA_VISIBLE_DEVICES=0 and SLUICE_DEVICE=gpu:0, and torch found exactly one GPU"
  else
    bad "stages saw the wrong devices"
  fi
else
  bad "the placement workflow failed"
fi
cat >toobig.yaml <<'EOF'
version: 1
name: toobig
stages:
  big:
    run: echo never > ${{ outputs.out }}
    outputs: {out: out/big.txt}
    resources: {gpu: 4}
EOF
block "$BIN" run toobig.yaml --progress=plain && bad "gpu: 4 on this machine should fail at plan time" || ok "gpu: 4 fails at plan time"
test -e out/big.txt && bad "the impossible stage ran" || true
say

fi

if [ "$ONLY" = all ] || [ "$ONLY" = quickstart ]; then
say "## Quickstart on the GPU"
mkdir -p "$W/qs" && cp -r "$REPO/pipelines" "$REPO/data" "$REPO/schemas" "$REPO/scripts" "$W/qs/" && cd "$W/qs" || exit 1
# The train and evaluate stages ask for a GPU; everything else stays as shipped.
awk '{print} /^    uses: (train|evaluate)$/ {print "    resources: {gpu: 1}"}' pipelines/quickstart.yaml >pipelines/gpu.yaml
T0=$(date +%s.%N)
timeout "${QS_TIMEOUT:-300}" "$BIN" run pipelines/gpu.yaml --progress=plain --json >"$W/qs.json" 2>"$W/qs.err"; QS=$?
tail -15 "$W/qs.err" | tee -a "$REPORT"
T1=$(date +%s.%N)
if [ "$QS" = 0 ]; then
  ok "quickstart on the GPU in $(awk "BEGIN {printf \"%.1f\", $T1 - $T0}") s"
  stage_table "$W/qs.json" exact_match f1 perplexity val_loss best_val_loss tokens_per_s base_exact_match loss
  grep -q '"device": *"gpu:0"' "$W/qs.json" && ok "train and evaluate ran on gpu:0" || bad "no stage ran on the GPU"
  "$BIN" run pipelines/gpu.yaml --json >"$W/qs2.json" 2>/dev/null
  "$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); s=[x['status'] for x in d['stages']]; print(s); sys.exit(0 if all(x=='cached' for x in s) else 1)" "$W/qs2.json" >/dev/null \
    && ok "the second run is fully cached" || bad "the second run re-ran stages: $(cat "$W/qs2.json" | head -c 600)"
  grep -n "unstable" -A4 pipelines/gpu.lock | head -30 >"$W/unstable.txt"
  say "Unstable outputs and metrics recorded in the lockfile (GPU):"
  block cat "$W/unstable.txt"
else
  bad "the quickstart failed on the GPU"
  "$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); [print(f\"  {s['name']}: {s['status']} {s.get('error') or ''}\") for s in d['stages']]" "$W/qs.json" 2>&1 | tee -a "$REPORT"
fi
say

fi

if [ "$ONLY" = all ] || [ "$ONLY" = classifier ]; then
say "## BERT classifier (pipelines/sentiment.yaml) on the GPU"
mkdir -p "$W/cls" && cp -r "$REPO/pipelines" "$REPO/data" "$REPO/schemas" "$REPO/scripts" "$W/cls/" && cd "$W/cls" || exit 1
awk '{print} /^    uses: (train|evaluate)$/ {print "    resources: {gpu: 1}"}' pipelines/sentiment.yaml >pipelines/gpu.yaml
T0=$(date +%s.%N)
timeout "${QS_TIMEOUT:-300}" "$BIN" run pipelines/gpu.yaml --json >"$W/cls.json" 2>"$W/cls.err"; CLS=$?
T1=$(date +%s.%N)
stage_table "$W/cls.json" accuracy macro_f1 loss val_loss val_accuracy best_val_loss tokens_per_s
if [ "$CLS" = 0 ] && grep -q '"device": *"gpu:0"' "$W/cls.json"; then
  ok "the sentiment classifier trained and was evaluated on gpu:0 in $(awk "BEGIN {printf \"%.1f\", $T1 - $T0}") s"
else
  bad "the sentiment pipeline failed on the GPU: $(tail -5 "$W/cls.err")"
fi
say
fi

if [ "$ONLY" = all ] || [ "$ONLY" = train ]; then
say "## Determinism and throughput of GPU training"
cd "$W" || exit 1
"$PY" - <<'EOF'
import random
rng = random.Random(7)
words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(3000)]
with open("corpus.txt", "w") as f:
    for _ in range(240):
        f.write(" ".join(rng.choice(words) for _ in range(600)) + "\n")
EOF
cat >bench.yaml <<'EOF'
version: 1
name: bench
stages:
  corpus:
    uses: collect
    with:
      sources:
        - path: corpus.txt
  train:
    uses: train
    resources: {gpu: 1}
    with:
      base: {init: {arch: llama, hidden: 256, layers: 4, heads: 4, vocab: 2048, seq: 256}}
      data: ${{ stages.corpus.outputs.data }}
      loss: all
      max_steps: 30
      batch_size: 8
      seq_len: 256
      overflow: truncate
      lr: 0.0003
EOF
for r in 1 2; do
  rm -rf .sluice bench.lock
  timeout 120 "$BIN" run bench.yaml --json >"bench$r.json" 2>"bench$r.err" || { bad "GPU training run $r failed: $(tail -5 "bench$r.err")"; }
  cp bench.lock "bench$r.lock"
done
"$PY" - <<'EOF' | tee -a "$REPORT"
import json
runs = [json.load(open(f"bench{r}.json")) for r in (1, 2)]
def train(d): return next(s for s in d["stages"] if s["name"] == "train")
for r, d in enumerate(runs, 1):
    t = train(d)
    print(f"- run {r}: device {t.get('device')}, tokens/s {t['metrics'].get('tokens_per_s', 0):,.0f}, final loss {t['metrics'].get('train_loss', t['metrics'].get('loss'))}")
import re
def digest(r):
    m = re.search(r"model:\n\s+path:.*\n\s+kind:.*\n\s+digest: (\w+)", open(f"bench{r}.lock").read())
    return m and m.group(1)
a, b = digest(1), digest(2)
print(f"- model digest, run 1 vs run 2: {a[:12] if a else None} vs {b[:12] if b else None} ({'identical' if a and a == b else 'different'})")
EOF
if "$PY" -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
  say "PyTorch on the same GPU (bench/train_torch.py --device cuda, same model and batch):"
  block timeout 120 "$PY" "$REPO/bench/train_torch.py" --device cuda --steps 30
fi
fi
say
[ "$FAILED" = 0 ] && say "All checks passed." || say "Some checks FAILED."
exit "$FAILED"
