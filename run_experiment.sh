#!/usr/bin/env bash
# Run one experiment end to end: teacher -> students -> evaluation, timing each step.
#   bash run_experiment.sh configs/quick.toml [--overwrite=true ...]
# Extra --name=value flags go to every step that defines that constant.
# Each step is one of the scripts and can be run alone with the same arguments. The wall time of each
# step is written to outputs/<experiment>/timings.md. A finished teacher is kept (and finished students,
# see distill_student.py) unless --overwrite=true is passed.
set -euo pipefail
cd "$(dirname "$0")"
config=${1:?usage: bash run_experiment.sh configs/NAME.toml [--name=value ...]}
shift
if [ -d ../shared/data/imdb ] && [ -z "${IMDB_DIR:-}" ]; then   # offline copies beside the checkout
  export IMDB_DIR=../shared/data/imdb HF_HUB_CACHE=../shared/hf-cache HF_HUB_OFFLINE=1
fi
experiment=$(python3 -c "import sys, tomllib; print(tomllib.load(open(sys.argv[1], 'rb')).get('experiment', 'paper'))" "$config")
root=outputs
for arg in "$@"; do   # the same overrides the scripts will see
  case $arg in --output_dir=*) root=${arg#--output_dir=} ;; --experiment=*) experiment=${arg#--experiment=} ;; esac
done
out=$root/$experiment
mkdir -p "$out"
echo "| step | wall time (s) | finished |" > "$out/timings.md.new"
echo "|---|---|---|" >> "$out/timings.md.new"
t0=$(date +%s)
for step in fine_tuning_teacher distill_student evaluate_models; do
  if [ $step = fine_tuning_teacher ] && [ -f "$out/teacher/metrics.json" ] && [[ " $* " != *" --overwrite=true "* && " $* " != *" --overwrite "* ]]; then
    echo "== $out/teacher is finished: skipping it (--overwrite=true retrains everything)"
    continue
  fi
  # each step gets the flags it defines (--overwrite is not the evaluation's): data_utils.step_flags
  mapfile -d '' args < <(python3 -c 'import sys; from data_utils import step_flags
sys.stdout.write("".join(a + "\0" for a in step_flags(sys.argv[1], sys.argv[2:])))' "$step" "$@")
  echo "== $step --config $config ${args[*]}"
  start=$(date +%s)
  python3 "$step.py" --config "$config" "${args[@]}"
  echo "| $step | $(( $(date +%s) - start )) | $(date -u +%FT%TZ) |" >> "$out/timings.md.new"
done
echo "| total | $(( $(date +%s) - t0 )) | $(date -u +%FT%TZ) |" >> "$out/timings.md.new"
mv "$out/timings.md.new" "$out/timings.md"
cat "$out/timings.md"
