#!/usr/bin/env bash
# One call of an experiment on a lent, time-limited GPU machine: each call ends after at most 10 minutes, the
# machine keeps /tmp only while calls follow each other closely, and the whole lease is short (this project's
# H200: 15 minutes in all; README, "Full scale on a GPU"). The experiment runs in a process session of its own
# (setsid), which the device tool lets outlive the call that started it, so it goes on through the next
# back-to-back call: one start-up, each model loaded once, one evaluation, whatever the calls' limits.
#   WAIT_S=570 bash lent_gpu.sh configs/full.toml [--name=value ...]              # starts it, or waits for it
#   WAIT_S=200 EVAL_S=110 bash lent_gpu.sh configs/full.toml [--name=value ...]   # the last call there is time for
# Each call:
#  1. stages the chunks of a pack carried in .devpack/cN (../shared/tools/make-device-pack; already staged ones
#     are skipped) and, once /tmp/offline holds IMDb and the models, points IMDB_DIR, HF_HUB_CACHE and
#     HF_HUB_OFFLINE at it (where they are unset);
#  2. starts `run_experiment.sh CONFIG --output_dir=$RUNS FLAGS` from a copy of this checkout (a later call's
#     fresh working tree must not change a running script) unless a run is going or has finished (a run that
#     was stopped or failed is started again: finished models are kept, an interrupted one resumes);
#  3. waits until the run ends or WAIT_S seconds of this call have passed;
#  4. with EVAL_S > 0 (the last call), a run still going is stopped (SIGTERM to its process group: each script
#     unwinds and releases the experiment's lock) and evaluate_models.py measures the finished models in at
#     most EVAL_S seconds;
#  5. packs the small results of $RUNS (no weights, checkpoints, logit caches or predictions) into
#     $OUT/runs.tgz and the run's log into $OUT/run.log.
# Exit status: the run's once it has ended (0: finished), 3 while it still runs.
set -euo pipefail
config=${1:?usage: WAIT_S=SECONDS [EVAL_S=SECONDS] bash lent_gpu.sh configs/NAME.toml [--name=value ...]}
shift
: "${WAIT_S:?WAIT_S: how long this call may wait for the run, in seconds from its start}"
: "${OUT:?OUT: the folder whose files come back from the GPU machine}"
EVAL_S=${EVAL_S:-0}
RUNS=$(realpath -m "${RUNS:-/tmp/runs}")   # the experiments' output folder (--output_dir)
base=$RUNS.run                             # the run's own files: code/ (the copy it runs), pid, rc, log
cd "$(dirname "$0")"

for stage in .devpack/c*/stage.sh; do if [ -f "$stage" ]; then bash "$stage"; fi; done
if [ -d /tmp/offline/imdb ]; then
  export IMDB_DIR=${IMDB_DIR:-/tmp/offline/imdb} HF_HUB_CACHE=${HF_HUB_CACHE:-/tmp/offline/hf-cache} \
    HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}
fi
export PYTHONUNBUFFERED=1
going() { [ -s "$base/pid" ] && kill -0 -- "-$(cat "$base/pid")" 2>/dev/null; }    # any process of its group

if ! going && [ "$(cat "$base/rc" 2>/dev/null)" != 0 ]; then
  rm -rf "$base/code" "$base/pid" "$base/rc" && mkdir -p "$base/code" "$RUNS"
  tar -cf - --exclude=./.devpack --exclude=./.git . | tar -xf - -C "$base/code"
  case $config in /*) ;; *) config=$base/code/$config ;; esac    # a file of the checkout: the copy's
  # the wrapper traps TERM so that it outlives the run's unwinding and records its exit status
  setsid bash -c 'echo $$ > "$1/pid"; trap : TERM; base=$1; shift
                  bash "$base/code/run_experiment.sh" "$@" >> "$base/log" 2>&1; echo $? > "$base/rc"' \
    _ "$base" "$config" --output_dir="$RUNS" "$@" < /dev/null > /dev/null 2>&1 &
  for _ in $(seq 100); do [ -s "$base/pid" ] && break; sleep 0.1; done
  echo "started $(cat "$base/pid"): run_experiment.sh $config --output_dir=$RUNS $* (log: $base/log)"
fi
while going && [ "$SECONDS" -lt "$WAIT_S" ]; do sleep 2; done
if going && [ "$EVAL_S" -gt 0 ]; then
  echo "stopping the run after ${SECONDS}s; evaluating the finished models in at most ${EVAL_S}s"
  kill -TERM -- "-$(cat "$base/pid")" 2>/dev/null || true
  for _ in $(seq 30); do going || break; sleep 1; done
  kill -KILL -- "-$(cat "$base/pid")" 2>/dev/null || true
  (cd "$base/code" && KD_ALL_STEPS=1 timeout -k 10 "$EVAL_S" python3 evaluate_models.py --config "$config" \
     --output_dir="$RUNS" "$@") \
    >> "$base/log" 2>&1 || echo "the evaluation of the finished models failed or ran out of time: see run.log"
fi
tar -czf "$OUT/runs.tgz" -C "$RUNS" --exclude='*.safetensors' --exclude=checkpoints --exclude=teacher_logits \
  --exclude=predictions --exclude='*.partial' --exclude=.lock .
cp "$base/log" "$OUT/run.log"
tail -n 12 "$base/log"
if going; then echo "still running after ${SECONDS}s: call again at once to wait for it"; exit 3; fi
exit "$(cat "$base/rc" 2>/dev/null || echo 1)"
