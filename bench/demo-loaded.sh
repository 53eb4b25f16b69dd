#!/usr/bin/env bash
# bench/demo-loaded.sh - run the good demo (bin/canaryctl demo) many times on a loaded CPU and count
# its outcomes: README's statement about the demo on a loaded machine comes from here.
#
#   bench/demo-loaded.sh                   # RUNS=20 PAR=2 BURNERS=12 CPU=0
#   RUNS=20 PAR=4 BURNERS=0 bench/demo-loaded.sh     # no burners: the machine as it is
#   STALL_MS=500 RUNS=3 PAR=1 BURNERS=0 bench/demo-loaded.sh  # canary v2 stopped (SIGSTOP) for 0.5 s
#                                          # as step 3 starts: one process starved, as on a busy machine
#
# BURNERS busy loops and the demos share one core (CPU, with taskset): 12 burners and 2 demos on one
# core give each process what a 2-core machine at load average 25-30 gives it. Every demo is bounded
# (it ends by itself: promoted, rolled back, or paused at its maxBake); the burners are this script's
# children, stopped on exit. Prints one line per run (exit code, wall seconds, load average, the
# outcome and its reason) and a summary; keeps each run's JSON report and stderr in OUTDIR.
# Needs: taskset, python3, a built bin/canaryctl (make build).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${RUNS:-20}
PAR=${PAR:-2}
BURNERS=${BURNERS:-12}
CPU=${CPU:-0}
BIN=${CANARYCTL_BIN:-$ROOT/bin/canaryctl}
OUTDIR=${OUTDIR:-$ROOT/bench/results/demo-$(date -u +%Y%m%dT%H%M%SZ)}
[ -x "$BIN" ] || { echo "demo-loaded: $BIN is missing: run make build (or set CANARYCTL_BIN)" >&2; exit 2; }
mkdir -p "$OUTDIR"

burners=()
stop() { for p in "${burners[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap stop EXIT
for _ in $(seq "$BURNERS"); do
  taskset -c "$CPU" sh -c 'while :; do :; done' &
  burners+=($!)
done

one() {
  local i=$1 start code=0 secs
  start=$(date +%s.%N)
  if [ -z "${STALL_MS:-}" ]; then
    taskset -c "$CPU" "$BIN" demo -o json >"$OUTDIR/$i.json" 2>"$OUTDIR/$i.err" || code=$?
  else
    taskset -c "$CPU" "$BIN" demo -o json >"$OUTDIR/$i.json" 2>"$OUTDIR/$i.err" &
    local demo=$! canary=""
    # step 2 ends with a pass or "moving on"; step 3 (50/50) starts at once
    while kill -0 "$demo" 2>/dev/null && ! grep -q 'step 2/3.*\(moving on\|| pass |\)' "$OUTDIR/$i.err"; do sleep 0.05; done
    canary=$(pgrep -P "$demo" -f -- '--version v2' | head -1 || true)
    if [ -n "$canary" ]; then
      kill -STOP "$canary"; sleep "$(python3 -c "print($STALL_MS / 1000)")"; kill -CONT "$canary"
    fi
    wait "$demo" || code=$?
  fi
  secs=$(python3 -c "import time; print(f'{time.time() - $start:.1f}')")
  python3 - "$OUTDIR/$i.json" "$i" "$code" "$secs" "$(cut -d' ' -f1 /proc/loadavg)" <<'EOF'
import json, sys
path, i, code, secs, load = sys.argv[1:]
try:
    r = json.load(open(path))["report"]
    phase, reason = r["phase"], r.get("reason", "")
except Exception as e:  # a run that printed no report
    phase, reason = "no-report", str(e)
print(f"run {i}: exit {code} in {secs} s at load {load}: {phase}: {reason[:240]}")
EOF
}
export -f one
export BIN OUTDIR CPU STALL_MS
seq 1 "$RUNS" | xargs -P "$PAR" -I{} bash -c 'one {}' | tee "$OUTDIR/runs.txt"
python3 - "$OUTDIR/runs.txt" <<'EOF'
import re, statistics, sys
runs = [l for l in open(sys.argv[1]) if l.startswith("run ")]
secs = [float(re.search(r" in ([0-9.]+) s", l).group(1)) for l in runs]
count = {}
for l in runs:
    phase = l.split(": ")[2] if l.count(": ") >= 2 else "?"
    count[phase] = count.get(phase, 0) + 1
print(f"{len(runs)} runs: " + ", ".join(f"{k} {v}" for k, v in sorted(count.items())) +
      f"; wall {min(secs):.1f}-{max(secs):.1f} s, median {statistics.median(secs):.1f} s")
EOF
