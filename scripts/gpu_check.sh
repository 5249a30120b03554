#!/usr/bin/env bash
# GPU verification (issues #8 and #19) on the borrowed H200 machine: PyTorch but no Rust
# toolchain, no network and no `.git`. The x86-64 release binary is built here, stripped and
# carried in `.gpu/`; the script then fits the device tool's limits: at most 64 MiB carried,
# at most 8 files back from $OUT (16 MiB each, 64 MiB together, 2 folders down), and 15 minutes
# of device time per task, a machine's start (1-2 min) included.
#
# Steps, in order of value (`mvt info` runs first every time and must show CUDA):
#   selfcheck   mvt selfcheck --device cuda: every scan, cuda_fused too, against the reference;
#               both models in every mode against their CPU twins; the golden checkpoints
#   fig8_left   experiments/gpu_check/fig8_left.yaml: the core ops, D 1024, N 16, bf16, L 2^9
#               up to 2^17 or as far as the step's time allows: chunked (`auto`), cuda_fused, SDPA
#   crossover   experiments/gpu_check/crossover.yaml: mixer against attention layer, d 1024, 2048
#               and 4096, forward, then forward+backward
#   memory      experiments/gpu_check/memory.yaml: peak memory of a training pass, d 2048
#   generation  experiments/gpu_check/generation.yaml: Fig. 8 (right) at about 130M parameters
#   Any other experiments/gpu_check/NAME.yaml runs after these as NAME: hybrid (a Jamba block's
#               decoding against a Transformer's) and ssd_vs_scan (Mamba-2's SSD against the scan).
# Each step runs under `timeout`: on the GPU selfcheck 100 s, fig8_left 75 s, crossover 100 s,
# memory 35 s, generation 40 s (others 40 s), the suites about 4 minutes in all, and every step
# within --deadline (390 s from the start). Rows are saved as each run ends, so a step stopped
# at its limit keeps what it measured (its charts are then drawn from those rows), and a rerun
# with --resume-from measures only what is missing. Each step prints its elapsed time. On the GPU
# the script exports MVT_REQUIRE_CUDA=1, so nothing there can pass by skipping CUDA (it runs no
# test binaries itself).
#
# Results: the results folders and selfcheck.txt are written into a work folder and packed, after
# every step, into $OUT/h200-results.tar.gz (top folder h200/, a dry run's dry-run/) beside
# $OUT/log.txt and $OUT/info.txt. Over 16 MiB the archive drops its PNG charts (the SVGs and the
# tables stay). Unpack with `tar -xzf h200-results.tar.gz -C results/` into results/h200/<step>/.
#
# 1. Here, on the build machine:
#      scripts/gpu_check.sh --dry-run     # --prepare, then every step on this CPU, shrunk
#    --prepare builds the release binary (`--no-build` skips that), copies it stripped to
#    .gpu/mvt, writes the commit and whether the tree is dirty to .gpu/provenance.env (exported as
#    MVT_GIT_COMMIT and MVT_GIT_DIRTY there, for the manifests), and stops if .gpu/ is over 60 MiB
#    or the whole tree that travels over 64 MiB.
# 2. The one device call (about 6.5 minutes at most; with the start, about 9 of the 15):
#      run  command: scripts/gpu_check.sh      carry: [".gpu"]      timeout_s: 420
# 3. Only if a step failed or stopped at its limit and at least 5 minutes are left: the machine
#    stays warm only 30 s, so this is usually a fresh start (1-2 min; none starts under 4 min left):
#      cp <files_at>/h200-results.tar.gz .gpu/previous.tar.gz
#      run  command: scripts/gpu_check.sh --only crossover --resume-from .gpu/previous.tar.gz --deadline 150
#           carry: [".gpu"]      timeout_s: 180
#    then give_back.
#
# Usage:
#   scripts/gpu_check.sh [--only STEP[,STEP...]] [--resume-from ARCHIVE] [--deadline SECONDS]
#   scripts/gpu_check.sh --prepare [--no-build]
#   scripts/gpu_check.sh --dry-run [--no-build] [--only STEP[,STEP...]]
# A full dry run also tests the packing and the limits: a failing `--only`, a rerun of one step
# alone, a resumed rerun, a step stopped by its timeout, and an archive forced to drop its PNGs.
# Environment: OUT (default gpu-check-out/h200, for a dry run gpu-check-out/dry-run),
# MVT_GPU_DIR (default .gpu), MVT_BIN (default $MVT_GPU_DIR/mvt), MVT_BIN_SRC (the binary to
# strip; default $CARGO_TARGET_DIR/release/mvt), MVT_GPU_STEP_TIMEOUT_S (every step's limit).
set -euo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SELF="$ROOT/scripts/gpu_check.sh"
SUITE_DIR="$ROOT/experiments/gpu_check"
GPU_DIR=${MVT_GPU_DIR:-$ROOT/.gpu}
ARCHIVE=h200-results.tar.gz
MIB=$((1024 * 1024))
FILE_LIMIT=$((16 * MIB))      # one file back from $OUT
OUT_LIMIT=$((64 * MIB))       # all of $OUT
OUT_FILES=8
GPU_DIR_LIMIT=$((60 * MIB))   # .gpu/, carried
TREE_LIMIT=$((64 * MIB))      # everything that travels
KNOWN_STEPS=(selfcheck fig8_left crossover memory generation)
declare -A GPU_CAP=([selfcheck]=100 [fig8_left]=75 [crossover]=100 [memory]=35 [generation]=40)
EXTRA_CAP=40
DRY_RUN_CAP=1200
DEFAULT_DEADLINE=390

die() {
  echo "gpu_check: $*" >&2
  exit 2
}
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# ---------------------------------------------------------------------------------------------
# Arguments, all checked before anything runs.
MODE=gpu
ONLY=""
ONLY_SET=0
RESUME_FROM=""
DEADLINE=""
BUILD=1
PREPARE=1
SELFTEST=1
while (($#)); do
  case $1 in
    --dry-run) MODE=dry ;;
    --prepare) MODE=prepare ;;
    --no-build) BUILD=0 ;;
    --no-prepare) PREPARE=0 ;;   # internal: a dry run's own reruns reuse its .gpu
    --no-selftest) SELFTEST=0 ;; # internal
    --only)
      (($# >= 2)) || die "--only needs a step: ${KNOWN_STEPS[*]}"
      ONLY=$2 ONLY_SET=1
      shift
      ;;
    --only=*) ONLY=${1#--only=} ONLY_SET=1 ;;
    --resume-from)
      (($# >= 2)) || die "--resume-from needs an archive"
      RESUME_FROM=$2
      shift
      ;;
    --resume-from=*) RESUME_FROM=${1#--resume-from=} ;;
    --deadline)
      (($# >= 2)) || die "--deadline needs seconds"
      DEADLINE=$2
      shift
      ;;
    --deadline=*) DEADLINE=${1#--deadline=} ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$SELF" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    *) die "unknown argument \`$1\` (see --help)" ;;
  esac
  shift
done

STEPS=("${KNOWN_STEPS[@]}")
for suite in "$SUITE_DIR"/*.yaml; do
  name=$(basename "$suite" .yaml)
  [[ $name =~ ^[A-Za-z0-9_-]+$ ]] || die "$suite: a step's name may hold only letters, digits, _ and -"
  if [[ " ${KNOWN_STEPS[*]} " != *" $name "* ]]; then
    STEPS+=("$name")
  fi
done
for step in "${KNOWN_STEPS[@]:1}"; do
  [[ -f $SUITE_DIR/$step.yaml ]] || die "no suite $SUITE_DIR/$step.yaml for step $step"
done

SELECTED=()
if ((ONLY_SET)); then
  IFS=, read -r -a wanted <<<"$ONLY"
  ((${#wanted[@]})) || die "--only needs a step: ${STEPS[*]}"
  for want in "${wanted[@]}"; do
    [[ " ${STEPS[*]} " == *" $want "* ]] || die "--only: no step \`$want\`; the steps are: ${STEPS[*]}"
  done
  for step in "${STEPS[@]}"; do # in the order of value, whatever order --only gave
    [[ ",$ONLY," == *",$step,"* ]] && SELECTED+=("$step")
  done
else
  SELECTED=("${STEPS[@]}")
fi
if [[ -n $DEADLINE ]]; then
  [[ $DEADLINE =~ ^[0-9]+$ ]] || die "--deadline takes whole seconds, not \`$DEADLINE\`"
elif [[ $MODE == gpu ]]; then
  DEADLINE=$DEFAULT_DEADLINE
else
  DEADLINE=0 # none
fi
if [[ -n ${MVT_GPU_STEP_TIMEOUT_S:-} && ! $MVT_GPU_STEP_TIMEOUT_S =~ ^[0-9]+$ ]]; then
  die "MVT_GPU_STEP_TIMEOUT_S takes whole seconds"
fi
if [[ -n $RESUME_FROM ]]; then
  [[ $MODE != prepare ]] || die "--resume-from is for a run, not --prepare"
  [[ $RESUME_FROM == /* ]] || RESUME_FROM="$PWD/$RESUME_FROM"
  [[ -f $RESUME_FROM ]] || die "--resume-from: no archive at $RESUME_FROM"
fi

# ---------------------------------------------------------------------------------------------
# Preparation, on the build machine: the stripped binary, its provenance, the size checks.
tree_bytes() {
  # Tracked and untracked-not-ignored files: what travels besides the carried paths.
  # A tracked file deleted here is no error.
  (cd "$ROOT" && git ls-files -z --cached --others --exclude-standard |
    { xargs -0 -r stat -c %s -- 2>/dev/null || true; } | awk '{ s += $1 } END { print s + 0 }')
}

prepare() {
  local src=${MVT_BIN_SRC:-} tmp gpu_bytes tree total commit dirty
  if ((BUILD)) || [[ -z $src ]]; then
    # shellcheck source=/dev/null
    source "$ROOT/scripts/env.sh" >/dev/null
    src=${src:-$CARGO_TARGET_DIR/release/mvt}
  fi
  if ((BUILD)); then
    echo "prepare: cargo build --release --bin mvt"
    (cd "$ROOT" && cargo build --release --bin mvt --quiet)
  fi
  [[ -x $src ]] || die "no mvt binary at $src; build one (cargo build --release) or set MVT_BIN_SRC"
  mkdir -p "$GPU_DIR"
  tmp="$GPU_DIR/mvt.part"
  rm -f "$tmp"
  # Without its line tables (about 585 MB with them); the symbols stay, for backtraces.
  objcopy --strip-debug "$src" "$tmp" 2>/dev/null || strip --strip-debug -o "$tmp" "$src"
  mv -f "$tmp" "$GPU_DIR/mvt"
  chmod +x "$GPU_DIR/mvt"
  if (($(du -sb "$GPU_DIR" | cut -f1) > GPU_DIR_LIMIT)); then
    echo "prepare: $GPU_DIR is $(mib "$(du -sb "$GPU_DIR" | cut -f1)") MiB with the symbols; stripping them too"
    strip --strip-all -o "$tmp" "$src"
    mv -f "$tmp" "$GPU_DIR/mvt"
    chmod +x "$GPU_DIR/mvt"
  fi

  if commit=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null); then
    if [[ -n $(git -C "$ROOT" status --porcelain 2>/dev/null) ]]; then dirty=true; else dirty=false; fi
  else
    commit="" dirty=""
    echo "prepare: warning: $ROOT is no git checkout; the manifests will name no commit" >&2
  fi
  {
    echo "# Written by scripts/gpu_check.sh --prepare; exported on the GPU machine, which has no .git."
    echo "MVT_GIT_COMMIT=$commit"
    echo "MVT_GIT_DIRTY=$dirty"
    echo "MVT_PREPARED_AT=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "MVT_BIN_SHA256=$(sha256sum "$GPU_DIR/mvt" | cut -d' ' -f1)"
  } >"$GPU_DIR/provenance.env"

  gpu_bytes=$(du -sb "$GPU_DIR" | cut -f1)
  tree=$(tree_bytes)
  if [[ -d $ROOT/shared ]] && git -C "$ROOT" check-ignore -q shared 2>/dev/null; then
    tree=$((tree + $(du -sb "$ROOT/shared" | cut -f1)))
  fi
  total=$((gpu_bytes + tree))
  echo "prepare: $GPU_DIR/mvt $(mib "$(stat -c %s "$GPU_DIR/mvt")") MiB (from $src, $(mib "$(stat -c %s "$src")") MiB)"
  echo "prepare: commit ${commit:-none}, dirty ${dirty:-unknown}"
  if [[ -e $GPU_DIR/previous.tar.gz ]]; then
    echo "prepare: also carried: $GPU_DIR/previous.tar.gz ($(mib "$(stat -c %s "$GPU_DIR/previous.tar.gz")") MiB)"
  fi
  echo "prepare: what travels: $GPU_DIR $(mib "$gpu_bytes") MiB + the tree $(mib "$tree") MiB = $(mib "$total") MiB"
  if ((gpu_bytes > GPU_DIR_LIMIT)); then
    echo "gpu_check: $GPU_DIR is $(mib "$gpu_bytes") MiB, over the 60 MiB it may take (the device carries 64 MiB in all): strip the binary, or remove what else is in $GPU_DIR" >&2
    exit 3
  fi
  if ((total > TREE_LIMIT)); then
    echo "gpu_check: $GPU_DIR and the working tree are $(mib "$total") MiB together, over the device's 64 MiB: remove untracked files or ignore them" >&2
    exit 3
  fi
}

if [[ $MODE == prepare ]]; then
  prepare
  echo "prepare: ready. The device call: run command \`scripts/gpu_check.sh\`, carry [\".gpu\"], timeout_s 420"
  exit 0
fi

# ---------------------------------------------------------------------------------------------
# A run: $OUT, the log, the work folder.
if [[ -z ${OUT:-} ]]; then
  if [[ $MODE == dry ]]; then
    OUT=$ROOT/gpu-check-out/dry-run
    rm -rf "$OUT" # this script's own scratch folder (git-ignored)
  else
    OUT=$ROOT/gpu-check-out/h200
  fi
fi
mkdir -p "$OUT"
LOG=$OUT/log.txt
: >"$LOG"
exec > >(tee -a "$LOG") 2>&1
TEE_PID=$!
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
# shellcheck disable=SC2317 # the EXIT trap
finish() {
  local rc=$?
  [[ ${MVT_GPU_KEEP_WORK:-0} == 1 ]] || rm -rf "$WORK"
  exec 1>&- 2>&-
  wait "$TEE_PID" 2>/dev/null || true
  exit "$rc"
}
trap finish EXIT
if [[ $MODE == dry ]]; then PACK_ROOT=dry-run; else PACK_ROOT=h200; fi
PACK="$WORK/pack/$PACK_ROOT"
mkdir -p "$PACK" "$WORK/suites"
T_START=$(now)
STATUS=0
echo "gpu_check: $MODE run of: ${SELECTED[*]} ($( ((DEADLINE)) && echo "deadline $DEADLINE s" || echo "no deadline")); results in $OUT"

if [[ -n $RESUME_FROM ]]; then
  tar -xzf "$RESUME_FROM" -C "$WORK/pack"
  [[ -d $PACK ]] || die "$RESUME_FROM has no $PACK_ROOT/ folder"
  echo "gpu_check: resuming from $RESUME_FROM: $(cd "$PACK" && find . -mindepth 1 -maxdepth 1 | sed 's|^\./||' | sort | tr '\n' ' ')"
fi

# The archive of the work folder, at most `limit` bytes, into `dest`: without the PNG charts
# when it is over, then without the SVGs too; fails when even the tables are over.
pack() {
  local dest=${1:-$OUT} limit=${2:-$FILE_LIMIT} part size
  part="$dest/$ARCHIVE.part"
  trim_log
  tar -C "$WORK/pack" --exclude=.work -czf "$part" "$PACK_ROOT" || { echo "pack: tar failed" >&2; return 1; }
  size=$(stat -c %s "$part")
  if ((size > limit)); then
    echo "pack: the archive is $(mib "$size") MiB, over $(mib "$limit") MiB: dropping the PNG charts (the SVGs and the tables stay)"
    tar -C "$WORK/pack" --exclude=.work --exclude='*.png' -czf "$part" "$PACK_ROOT" || return 1
    size=$(stat -c %s "$part")
  fi
  if ((size > limit)); then
    echo "pack: still $(mib "$size") MiB without PNGs: dropping the SVGs too (the tables stay)"
    tar -C "$WORK/pack" --exclude=.work --exclude='*.png' --exclude='*.svg' -czf "$part" "$PACK_ROOT" || return 1
    size=$(stat -c %s "$part")
  fi
  if ((size > limit)); then
    rm -f "$part"
    echo "pack: ERROR: even the tables are $(mib "$size") MiB, over $(mib "$limit") MiB; no archive written" >&2
    return 1
  fi
  mv -f "$part" "$dest/$ARCHIVE"
  echo "pack: $dest/$ARCHIVE $(awk -v b="$size" 'BEGIN { printf "%.1f", b / 1024 }') KiB, $(tar -tzf "$dest/$ARCHIVE" | grep -vc '/$') files"
}

# A log over the file limit would not come back at all: keep its head and its tail.
trim_log() {
  local size
  size=$(stat -c %s "$LOG")
  if ((size > FILE_LIMIT - MIB)); then
    { head -c $((4 * MIB)) "$LOG"; printf '\n[... log trimmed by gpu_check ...]\n'; tail -c $((8 * MIB)) "$LOG"; } >"$WORK/log.cut"
    cp "$WORK/log.cut" "$LOG"
  fi
}

# Whether `dir` keeps the rules of what comes back from $OUT.
check_out() {
  local dir=$1 files=0 total=0 bad=0 path rel size
  while IFS= read -r -d '' path; do
    rel=${path#"$dir"/}
    if [[ ! $(basename "$rel") =~ ^[A-Za-z0-9._-]+$ ]]; then
      echo "limits: $rel: a name of other than letters, digits, '.', '_' and '-'" >&2
      bad=1
    fi
    if [[ -L $path || (! -f $path && ! -d $path) ]]; then
      echo "limits: $rel: not a plain file or folder" >&2
      bad=1
    elif [[ -f $path ]]; then
      files=$((files + 1))
      size=$(stat -c %s "$path")
      total=$((total + size))
      if ((size > FILE_LIMIT)); then
        echo "limits: $rel is $(mib "$size") MiB, over 16 MiB" >&2
        bad=1
      fi
      if [[ $rel == */*/*/* ]]; then
        echo "limits: $rel is more than 2 folders down" >&2
        bad=1
      fi
    fi
  done < <(find "$dir" -mindepth 1 -print0)
  if ((files > OUT_FILES)); then
    echo "limits: $dir holds $files files, over $OUT_FILES" >&2
    bad=1
  fi
  if ((total > OUT_LIMIT)); then
    echo "limits: $dir holds $(mib "$total") MiB, over 64 MiB" >&2
    bad=1
  fi
  if ((bad)); then
    echo "limits: $dir would not come back whole" >&2
    return 1
  fi
  echo "limits: $dir: $files files, $(mib "$total") MiB: within 8 files, 16 MiB each, 64 MiB in all, 2 folders down"
}

# ---------------------------------------------------------------------------------------------
# The binary, this machine's libtorch, the provenance.
if [[ $MODE == dry && $PREPARE == 1 ]]; then
  prepare
fi
BIN=${MVT_BIN:-$GPU_DIR/mvt}
if [[ ! -x $BIN ]]; then
  echo "gpu_check: no mvt binary at $BIN; run \`scripts/gpu_check.sh --prepare\` on the build machine and carry .gpu" >&2
  exit 2
fi
PROVENANCE=$GPU_DIR/provenance.env
PROV_COMMIT=""
if [[ -f $PROVENANCE ]]; then
  while IFS='=' read -r key value; do
    case $key in
      MVT_GIT_COMMIT) export MVT_GIT_COMMIT="$value" && PROV_COMMIT=$value ;;
      MVT_GIT_DIRTY) export MVT_GIT_DIRTY="$value" ;;
    esac
  done <"$PROVENANCE"
  cp "$PROVENANCE" "$PACK/provenance.env"
  echo "gpu_check: provenance: commit ${MVT_GIT_COMMIT:-none}, dirty ${MVT_GIT_DIRTY:-unknown}"
else
  echo "gpu_check: warning: no $PROVENANCE; the manifests will name no commit (run --prepare)" >&2
fi
if [[ $MODE == gpu ]]; then
  export MVT_REQUIRE_CUDA=1 # a CUDA check that would skip for want of a GPU fails here
fi

# The binary's rpath points at the build machine's torch; this machine's comes first.
TORCH_LIB=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null || true)
if [[ -n $TORCH_LIB ]]; then
  export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  # NVRTC, which the fused CUDA scan compiles its kernel with, sits beside torch in a wheel.
  NVRTC_LIB="$(dirname "$(dirname "$TORCH_LIB")")/nvidia/cu13/lib"
  if [[ -d $NVRTC_LIB ]]; then
    export LD_LIBRARY_PATH="$NVRTC_LIB:$LD_LIBRARY_PATH"
  fi
fi

t0=$(now)
if ! timeout -k 5 60 "$BIN" info >"$OUT/info.txt" 2>&1; then
  cat "$OUT/info.txt"
  echo "gpu_check: \`mvt info\` failed; libraries the binary cannot find:" >&2
  ldd "$BIN" 2>&1 | grep -i 'not found' >&2 || true
  exit 1
fi
cat "$OUT/info.txt"
cp "$OUT/info.txt" "$PACK/info.txt"
echo "--- info: $(since "$t0") s"
DEVICE=cpu
if [[ $MODE == gpu ]]; then
  if ! grep -q "^CUDA available    true" "$OUT/info.txt"; then
    pack || true
    echo "gpu_check: libtorch sees no CUDA device here; nothing to check (use --dry-run on a CPU)" >&2
    exit 1
  fi
  DEVICE=cuda
fi
pack || STATUS=1

# ---------------------------------------------------------------------------------------------
# The steps.
step_cap() {
  local step=$1 cap left
  if [[ -n ${MVT_GPU_STEP_TIMEOUT_S:-} ]]; then
    cap=$MVT_GPU_STEP_TIMEOUT_S
  elif [[ $MODE == dry ]]; then
    cap=$DRY_RUN_CAP
  else
    cap=${GPU_CAP[$step]:-$EXTRA_CAP}
  fi
  if ((DEADLINE > 0)); then
    # 15 s kept for packing and the summary.
    left=$(awk -v d="$DEADLINE" -v a="$T_START" -v b="$(now)" 'BEGIN { printf "%d", d - (b - a) - 15 }')
    if ((left < cap)); then
      cap=$left
      ((cap >= 10)) || cap=0 # not worth a start
    fi
  fi
  echo "$cap"
}

# The suite as it runs here: a dry run swaps each line that carries a `# dry-run: …` alternative.
suite_for() {
  local step=$1 suite="$SUITE_DIR/$1.yaml" dest="$WORK/suites/$1.yaml"
  if [[ $MODE == dry ]]; then
    sed -E 's/^( *)[^ #][^#]*# dry-run: (.*)$/\1\2/' "$suite" >"$dest"
  else
    cp "$suite" "$dest"
  fi
  echo "$dest"
}

FAILED=()
SUMMARY=()
run_step() {
  local step=$1 cap t_step rc=0 state elapsed suite args
  cap=$(step_cap "$step")
  if ((cap <= 0)); then
    echo "=== $step: skipped, too little time left before the deadline (${DEADLINE} s)"
    state=no-time rc=-
    elapsed=0.0
  else
    echo "=== $step (limit $cap s, $(since "$T_START") s into the run)"
    t_step=$(now)
    set +e
    if [[ $step == selfcheck ]]; then
      timeout -k 10 "$cap" "$BIN" selfcheck --device "$DEVICE" --fixtures "$ROOT/tests/data" 2>&1 |
        tee "$PACK/selfcheck.txt"
      rc=${PIPESTATUS[0]}
    else
      suite=$(suite_for "$step")
      args=(run "$suite" --out "$PACK/$step")
      [[ -f $PACK/$step/rows.jsonl ]] && args+=(--resume)
      timeout -k 10 "$cap" "$BIN" "${args[@]}"
      rc=$?
      if [[ ($rc == 124 || $rc == 137) && -f $PACK/$step/rows.jsonl ]]; then
        echo "$step: stopped at its limit; drawing the charts of the rows it has"
        timeout -k 5 60 "$BIN" plot "$PACK/$step" >/dev/null
      fi
    fi
    set -e
    elapsed=$(since "$t_step")
    case $rc in
      0) state=ok ;;
      124 | 137) state=timeout ;;
      1) if [[ $step == selfcheck ]]; then state=failed; else state=runs-failed; fi ;;
      2) state=invalid-input ;;
      *) state=error ;;
    esac
  fi
  printf '%s\t%s\t%s\t%s\t%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$step" "$state" "$rc" "$elapsed" >>"$PACK/steps.tsv"
  SUMMARY+=("$(printf '%-12s %-14s rc %-4s %7s s' "$step" "$state" "$rc" "$elapsed")")
  echo "--- $step: $state (rc $rc) in $elapsed s"
  if [[ $state != ok ]]; then
    STATUS=1
    FAILED+=("$step")
  fi
  pack || STATUS=1
}

for step in "${SELECTED[@]}"; do
  run_step "$step"
done

# Every manifest names the prepared commit (git gives none in the copy without .git).
check_provenance() {
  local dir=$1 manifest ok=0
  for manifest in "$dir"/*/manifest.json; do
    [[ -f $manifest ]] || continue
    if grep -Eq "\"git_commit\": *\"$PROV_COMMIT\"" "$manifest"; then
      ok=$((ok + 1))
    else
      echo "provenance: $manifest names no commit $PROV_COMMIT" >&2
      return 1
    fi
  done
  echo "provenance: $ok manifest(s) name commit $PROV_COMMIT"
}
if [[ -n $PROV_COMMIT ]] && ! check_provenance "$PACK"; then
  echo "gpu_check: a manifest lacks the prepared commit: is the binary older than src/environment.rs's MVT_GIT_COMMIT fallback? (rebuild, --prepare)" >&2
  [[ $MODE == gpu ]] || STATUS=1 # on the GPU the measurements still count
fi

echo "=== summary ($(since "$T_START") s in all)"
printf '  %s\n' "${SUMMARY[@]}"
if ((${#FAILED[@]})); then
  joined=$(IFS=,; echo "${FAILED[*]}")
  echo "gpu_check: to rerun what failed: scripts/gpu_check.sh --only $joined --resume-from .gpu/previous.tar.gz (after copying this $ARCHIVE there)"
fi
pack || STATUS=1
check_out "$OUT" || STATUS=1

# ---------------------------------------------------------------------------------------------
# A full dry run also tests the packing, the limits and --only.
# shellcheck disable=SC2317 # called through expect
has() { grep -Eq "$2" <<<"$1"; } # a listing, a pattern
# shellcheck disable=SC2317
lacks() { ! grep -Eq "$2" <<<"$1"; }
selftest() {
  local dir="$WORK/selftest" rc sub size limit listing step fail=0
  expect() { # what it checks, then the check; a failed check fails the dry run
    local what=$1
    shift
    if "$@"; then
      echo "selftest: ok: $what"
    else
      echo "selftest: FAILED: $what" >&2
      fail=1
    fi
  }
  nested() { # its OUT, then its arguments: a dry run of this script that reuses this .gpu
    local out=$1
    shift
    OUT=$out MVT_GPU_DIR=$GPU_DIR "$SELF" --dry-run --no-prepare --no-selftest "$@"
  }
  mkdir -p "$dir"
  echo "=== selftest"

  set +e
  OUT="$dir/bogus" "$SELF" --dry-run --only bogus
  rc=$?
  set -e
  expect "--only with an unknown step stops with status 2, before anything runs" \
    test "$rc" -eq 2 -a ! -e "$dir/bogus"

  # An archive over its limit drops the PNGs and keeps the SVGs and the tables.
  expect "the results hold PNG charts to drop" test -n "$(find "$PACK" -name '*.png' -print -quit)"
  size=$(stat -c %s "$OUT/$ARCHIVE")
  limit=$((size - 1))
  mkdir -p "$dir/png"
  pack "$dir/png" "$limit" || true
  listing=$(tar -tzf "$dir/png/$ARCHIVE" 2>/dev/null || true)
  expect "an archive over its limit ($limit bytes) is written within it" \
    test "$(stat -c %s "$dir/png/$ARCHIVE" 2>/dev/null || echo "$size")" -le "$limit"
  expect "... without its PNGs" lacks "$listing" '\.png$'
  expect "... with its SVGs" has "$listing" '\.svg$'
  expect "... and its tables" has "$listing" '/results\.csv$'

  # --only one step: its results alone.
  sub="$dir/only"
  set +e
  nested "$sub" --only memory
  rc=$?
  set -e
  listing=$(tar -tzf "$sub/$ARCHIVE" 2>/dev/null || true)
  expect "--only memory passes" test "$rc" -eq 0
  expect "... with memory's results" has "$listing" '^dry-run/memory/results\.csv$'
  expect "... and no other step's" lacks "$listing" '^dry-run/(fig8_left|crossover|generation)/|selfcheck\.txt'
  expect "... within the limits of what comes back" check_out "$sub"

  # A rerun resumed from the first archive keeps every step and measures only what is missing.
  sub="$dir/resume"
  set +e
  nested "$sub" --only memory --resume-from "$OUT/$ARCHIVE"
  rc=$?
  set -e
  listing=$(tar -tzf "$sub/$ARCHIVE" 2>/dev/null || true)
  expect "--only memory --resume-from passes" test "$rc" -eq 0
  for step in "${STEPS[@]:1}"; do
    expect "... keeps $step's results" has "$listing" "^dry-run/$step/results\\.csv\$"
  done
  expect "... and the selfcheck's" has "$listing" '^dry-run/selfcheck\.txt$'
  expect "... and reruns none of memory's runs" grep -Eq " 0 ran, [0-9]+ resumed, 0 failed" "$sub/log.txt"

  # A step stopped by its timeout is reported, and the run still packs what it has.
  sub="$dir/timeout"
  set +e
  MVT_GPU_STEP_TIMEOUT_S=1 nested "$sub" --only generation
  rc=$?
  set -e
  listing=$(tar -tzf "$sub/$ARCHIVE" 2>/dev/null || true)
  expect "a step past its limit fails the run" test "$rc" -eq 1
  expect "... says so" grep -q "^--- generation: timeout" "$sub/log.txt"
  expect "... and still packs" has "$listing" '^dry-run/steps\.tsv$'
  expect "... within the limits of what comes back" check_out "$sub"
  return "$fail"
}
if [[ $MODE == dry && $SELFTEST == 1 && -z $ONLY && -z $RESUME_FROM ]]; then
  selftest || STATUS=1
fi

echo "gpu_check: results in $OUT (status $STATUS)"
exit "$STATUS"
