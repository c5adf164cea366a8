#!/usr/bin/env bash
# The GPU check (issue 15), for a machine with one CUDA GPU; under 8 minutes with the default time limits:
#   (a) the notebook's study on the GPU:  python -m train -m experiment=mimic_paper trainer=gpu
#   (b) a 10-seed psi sweep on the GPU:   python -m train -m method=psi seed=0,1,...,9 trainer=gpu (one process: its
#       first job trains all 100 networks on the device, seed batching, stacked with trainer.batching=auto)
# each timed, with a fresh temporary MLflow store, and stopped at its time limit (STUDY_LIMIT_S, SEEDS_LIMIT_S: the
# folds finished by then are still compared, and the record says the run did not finish). Then the GPU study's
# folds are compared with a CPU run of the same study: CPU_REFERENCE, a folder of job folders (results.csv +
# job.json), by default the committed snapshot results/mimic (seed 42, trained on CPU); the seed sweep only when
# SEEDS_REFERENCE names a CPU run of it. Writes benchmarks/results/gpu-<date>.json (commit it; `make readme-tables`
# puts it in the README): times, the device (nvidia-smi), per method the fraction of folds with the same formula
# and the largest absolute metric difference.
# Without a CUDA GPU it stops at once with one line and exit status 2.
#
#   bash benchmarks/gpu_check.sh
#   STUDY_LIMIT_S=300 SEEDS_LIMIT_S=120 bash benchmarks/gpu_check.sh
#   CPU_REFERENCE=/path/to/a/cpu/sweep bash benchmarks/gpu_check.sh
# Trying the script's plumbing on a CPU (no verdict on any GPU; write elsewhere):
#   TRAINER=cpu EXTRA_ARGS="cv.folds=[0]" SEEDS=0,1 OUTPUT=/tmp/gpu-dry.json bash benchmarks/gpu_check.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PY:-.venv/bin/python}
TRAINER=${TRAINER:-gpu}
STUDY_LIMIT_S=${STUDY_LIMIT_S:-240}
SEEDS_LIMIT_S=${SEEDS_LIMIT_S:-180}
SEEDS=${SEEDS:-0,1,2,3,4,5,6,7,8,9}
CPU_REFERENCE=${CPU_REFERENCE:-results/mimic}
SEEDS_REFERENCE=${SEEDS_REFERENCE:--}
EXTRA_ARGS=${EXTRA_ARGS:-}
OUTPUT=${OUTPUT:-benchmarks/results/gpu-$(date +%F).json}

if [[ ! -x $PY ]]; then
  echo "gpu_check: $PY not found: run \`make install\` first" >&2
  exit 1
fi
if [[ $TRAINER == gpu ]] && ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  echo "gpu_check: no CUDA GPU here (torch.cuda.is_available() is False); nothing was run" >&2
  exit 2
fi
if [[ -z ${LENBENCH_DATA_DIR:-} ]]; then  # as the Makefile: ../shared/data when it is there, else ./data
  if [[ -f ../shared/data/mimic-ii/full_cohort_data.csv ]]; then
    LENBENCH_DATA_DIR=$(cd ../shared/data && pwd)
  else
    LENBENCH_DATA_DIR=$PWD/data
  fi
fi
export LENBENCH_DATA_DIR
read -r -a extra <<<"$EXTRA_ARGS"  # overrides such as cv.folds=[0]: split on spaces, never globbed
export PYTHONHASHSEED=0  # as make bench: one string hash seed for every run (see benchmarks/study_runs.py)

work=$(mktemp -d "${TMPDIR:-/tmp}/lenbench-gpu-XXXXXX")
trap 'rm -rf "$work"' EXIT
failed=0

# timed <name> <limit in s> <train arguments...>: runs `python -m train <arguments> <EXTRA_ARGS>` with its own MLflow
# store and sweep folder under $work/<name>; sets last_s (wall seconds) and last_status (124: stopped at the limit).
timed() {
  local name=$1 limit=$2 start end
  shift 2
  mkdir -p "$work/$name"
  echo "gpu_check: $name: python -m train $* $EXTRA_ARGS (limit ${limit} s)"
  start=$(date +%s.%N)
  set +e
  MLFLOW_TRACKING_URI="sqlite:///$work/$name/mlflow.db" timeout --kill-after=15 "$limit" \
    "$PY" -m train "$@" ${extra[@]+"${extra[@]}"} "hydra.sweep.dir=$work/$name/sweep" >"$work/$name/stdout.log" 2>"$work/$name/stderr.log"
  last_status=$?
  set -e
  end=$(date +%s.%N)
  last_s=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }')
  echo "gpu_check: $name: ${last_s} s, exit status $last_status"
  if [[ $last_status -eq 124 || $last_status -eq 137 ]]; then
    echo "gpu_check: $name: stopped at its ${limit} s limit; the folds finished by then are compared"
  elif [[ $last_status -ne 0 ]]; then
    failed=1
    tail -n 20 "$work/$name/stderr.log" >&2
  fi
}

timed study "$STUDY_LIMIT_S" -m experiment=mimic_paper "trainer=$TRAINER"
study=("$work/study/sweep" "$CPU_REFERENCE" "$last_s" "$last_status" "$STUDY_LIMIT_S"
  "python -m train -m experiment=mimic_paper trainer=$TRAINER${EXTRA_ARGS:+ $EXTRA_ARGS}")
timed psi_seeds "$SEEDS_LIMIT_S" -m method=psi "seed=$SEEDS" "trainer=$TRAINER"
seeds=("$work/psi_seeds/sweep" "$SEEDS_REFERENCE" "$last_s" "$last_status" "$SEEDS_LIMIT_S"
  "python -m train -m method=psi seed=$SEEDS trainer=$TRAINER${EXTRA_ARGS:+ $EXTRA_ARGS}")
echo "gpu_check: comparing the GPU study with the CPU run in $CPU_REFERENCE"
"$PY" benchmarks/gpu_compare.py record --output "$OUTPUT" --run study "${study[@]}" --run psi_seeds "${seeds[@]}"
exit "$failed"
