#!/usr/bin/env bash
# GPU verification (issue #8): run on the borrowed GPU machine from a copy of the repo that
# carries the x86-64 release binary built elsewhere, with no Rust toolchain and no network.
#
#   1. points the binary at this machine's torch `lib` folder and prints `mvt info`;
#   2. runs `mvt selfcheck` on CUDA: every scan against the CPU reference, both models in every
#      mode against their CPU twins (f32, bf16, f16), and the golden checkpoints;
#   3. runs the GPU suites of experiments/gpu_check/ (about 7 minutes on an H200) into $OUT.
#
# Usage:
#   scripts/gpu_check.sh              # on the GPU; the binary at $MVT_BIN (default .gpu/mvt)
#   scripts/gpu_check.sh --dry-run    # on a CPU: the same steps, every size shrunk, device cpu
#
# Prepare on the build machine: `scripts/mvt info` (builds the release binary), then
#   mkdir -p .gpu && cp "$CARGO_TARGET_DIR/release/mvt" .gpu/mvt
# and carry `.gpu` to the GPU machine with the repo.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DRY_RUN=0
if [[ "${1:-}" == "--dry-run" ]]; then
  DRY_RUN=1
fi
OUT=${OUT:-$ROOT/gpu-check-out}
mkdir -p "$OUT"

BIN=${MVT_BIN:-$ROOT/.gpu/mvt}
if [[ ! -x "$BIN" && $DRY_RUN == 1 ]]; then
  # shellcheck source=/dev/null
  source "$ROOT/scripts/env.sh" >/dev/null
  (cd "$ROOT" && cargo build --release --quiet)
  BIN=$CARGO_TARGET_DIR/release/mvt
fi
if [[ ! -x "$BIN" ]]; then
  echo "no mvt binary at $BIN; build one with scripts/mvt and copy it to .gpu/mvt" >&2
  exit 2
fi

# 1. This machine's libtorch (the binary's rpath points at the build machine's).
TORCH_LIB=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null || true)
if [[ -n "$TORCH_LIB" ]]; then
  export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  # NVRTC, which the fused CUDA scan compiles its kernel with, sits beside torch in a wheel.
  NVRTC_LIB="$(dirname "$(dirname "$TORCH_LIB")")/nvidia/cu13/lib"
  if [[ -d "$NVRTC_LIB" ]]; then
    export LD_LIBRARY_PATH="$NVRTC_LIB:$LD_LIBRARY_PATH"
  fi
fi
"$BIN" info | tee "$OUT/info.txt"
DEVICE=cpu
if [[ $DRY_RUN == 0 ]]; then
  if ! grep -q "^CUDA available    true" "$OUT/info.txt"; then
    echo "libtorch sees no CUDA device here; nothing to check (use --dry-run on a CPU)" >&2
    exit 1
  fi
  DEVICE=cuda
fi

# 2. Equivalence before any number counts.
status=0
"$BIN" selfcheck --device "$DEVICE" --fixtures "$ROOT/tests/data" | tee "$OUT/selfcheck.txt" || status=1

# 3. The suites; a dry run swaps each line that carries a `# dry-run: …` alternative.
SUITES="$OUT/suites"
mkdir -p "$SUITES"
for suite in "$ROOT"/experiments/gpu_check/*.yaml; do
  name=$(basename "$suite")
  if [[ $DRY_RUN == 1 ]]; then
    sed -E 's/^( *)[^ #][^#]*# dry-run: (.*)$/\1\2/' "$suite" > "$SUITES/$name"
  else
    cp "$suite" "$SUITES/$name"
  fi
  "$BIN" run "$SUITES/$name" --out "$OUT/results/${name%.yaml}" || status=1
done
echo "gpu_check: results in $OUT (status $status)"
exit $status
