#!/usr/bin/env bash
# Does the harness time a pass as criterion does? Issue #16 saw a suite time the d-768 Mamba
# mixer forward at L 4096 at 305 ms where `cargo bench --bench scan` said 228 ms. This times
# that one pass both ways, alternately, N times (default 5), on an idle machine, and prints the
# per-pair ratios (suite ÷ criterion), their median and a 95% bootstrap interval over pairs.
#
#   scripts/bias_check.sh [N] [OUT_DIR]     # OUT_DIR default /tmp/mvt-bias-check
#   WARMUP_S=1 scripts/bias_check.sh        # the suite side warms up for a second, not 2 calls
#   FIXED_ALLOCATOR=1 scripts/bias_check.sh # a third arm: the suite run again with the glibc
#                                           # malloc settings paired points use
#                                           # (FIXED_ALLOCATOR_ENV in src/runner/isolate.rs)
#
# Both sides: the fused CPU scan (the suite's `auto` on the CPU), batch 1, f32, 2 threads. The
# suite side is an unpaired one-model speed run, 10 samples of at least 10 ms (so one call
# each here), in a fresh worker process, as every suite run is; criterion's side is its median
# over its own 10 samples (`mixer_d768/cpu_fused/4096`), from its estimates.json.
# Nothing else may run meanwhile: a build or a suite in the background spoils both sides.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$MVT_ROOT"
pairs="${1:-5}"
out="${2:-/tmp/mvt-bias-check}"
mkdir -p "$out"

cat > "$out/suite.yaml" <<YAML
name: bias_check
description: The d-768 Mamba mixer forward at L 4096, as benches/scan.rs's mixer_d768 times it.
device: cpu
dtype: f32
seed: 0
threads: 2
models:
  mamba: { family: mamba, d_state: 16, d_conv: 4, expand: 2 }
experiments:
  - name: mixer
    kind: speed
    pass: forward
    component: mixer
    models: [mamba]
    grid: { d_model: [768], seq_len: [4096] }
    warmup: 2
    warmup_s: ${WARMUP_S:-0}
    repeats: 10
YAML

cargo build --release --bin mvt >&2
cargo bench --bench scan --no-run >&2
mvt="$CARGO_TARGET_DIR/release/mvt"
estimates="$CARGO_TARGET_DIR/criterion/mixer_d768/cpu_fused/4096/new/estimates.json"

: > "$out/pairs.tsv"
# The median of a one-run suite folder's only row.
suite_median() {
  python3 -c '
import json, sys
row = json.loads(open(sys.argv[1]).readline())
if row["status"] != "ok" or row.get("latency_median_s") is None:
    sys.exit("the suite run ended " + row["status"] + ": " + str(row.get("message")))
print(row["latency_median_s"])' "$1/rows.jsonl"
}
for i in $(seq 1 "$pairs"); do
  rm -rf "$out/run" "$out/run-fixed"
  "$mvt" run "$out/suite.yaml" --out "$out/run" > "$out/suite-$i.log" 2>&1
  suite_s=$(suite_median "$out/run")
  fixed_s=""
  if [ -n "${FIXED_ALLOCATOR:-}" ]; then
    MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=268435456 MALLOC_TOP_PAD_=16777216 \
      "$mvt" run "$out/suite.yaml" --out "$out/run-fixed" > "$out/suite-fixed-$i.log" 2>&1
    fixed_s=$(suite_median "$out/run-fixed")
  fi
  # libtorch's intra-op pool takes its size from OMP_NUM_THREADS: the suite's 2 threads.
  OMP_NUM_THREADS=2 cargo bench --bench scan -- --noplot 'mixer_d768/cpu_fused/4096$' > "$out/criterion-$i.log" 2>&1
  criterion_s=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["median"]["point_estimate"] / 1e9)' "$estimates")
  printf '%s\t%s\t%s\t%s\n' "$i" "$suite_s" "$criterion_s" "$fixed_s" | tee -a "$out/pairs.tsv"
done

python3 - "$out/pairs.tsv" <<'PY'
import random, statistics, sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1]) if line.strip()]
suite = [float(r[1]) for r in rows]
crit = [float(r[2]) for r in rows]
fixed = [float(r[3]) for r in rows if len(r) > 3 and r[3]]


def summary(name, ratios):
    rng = random.Random(0)
    boot = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(2000))
    lo, hi = boot[int(0.025 * len(boot))], boot[int(0.975 * len(boot)) - 1]
    print(f"{name} per pair: " + " ".join(f"{r:.3f}" for r in ratios))
    print(f"{name}: median {statistics.median(ratios):.3f}, 95% bootstrap interval {lo:.3f}-{hi:.3f}")


print(f"pairs: {len(rows)}")
print("suite ms:     " + " ".join(f"{s * 1e3:.1f}" for s in suite))
print("criterion ms: " + " ".join(f"{c * 1e3:.1f}" for c in crit))
summary("suite / criterion", [s / c for s, c in zip(suite, crit)])
if fixed:
    print("fixed ms:     " + " ".join(f"{f * 1e3:.1f}" for f in fixed))
    summary("fixed / suite", [f / s for f, s in zip(fixed, suite)])
    summary("fixed / criterion", [f / c for f, c in zip(fixed, crit)])
PY
