#!/usr/bin/env bash
# One call of an experiment on a lent, time-limited GPU machine: each call ends after at most 10 minutes, the
# machine keeps /tmp only while calls follow each other closely, and the whole lease is short (this project's
# H200: 15 minutes in all; staging below). The experiment runs in a process session of its own
# (setsid), which the device tool lets outlive the call that started it, so it goes on through the next
# back-to-back call: one start-up, each model loaded once, one evaluation, whatever the calls' limits.
#   CODE_COMMIT=0123abcd BUDGET_S=715 bash lent_gpu.sh configs/full.toml [--name=value ...]
# BUDGET_S: the device seconds left as this call starts (the previous call's reply, lease.budget_left_s).
# CODE_COMMIT: the commit of the checkout (`git rev-parse --short=12 HEAD` where git is), for the records where the
#   copy that travels to a device has no .git; not needed where this checkout has one.
# Each call:
#  1. stages the chunks of a pack carried in .devpack/cN (../shared/tools/make-device-pack; already staged ones
#     are skipped) and points IMDB_DIR, HF_HUB_CACHE and HF_HUB_OFFLINE at /tmp/offline (where they are unset);
#  2. starts `run_experiment.sh CONFIG --output_dir=$RUNS FLAGS` from a copy of this checkout (a later call's
#     fresh working tree must not change a running script) unless a run is going or has finished (a run that
#     was stopped or failed is started again: finished models are kept, an interrupted one resumes);
#  3. waits until the run ends or the call must return: CALL_S less 15 s, and BUDGET_S less MARGIN_S for the
#     transfers, whichever comes first;
#  4. on the last call the budget leaves room for (another would get under a minute), a run still training
#     EVAL_S + 40 s before that (30 s to unwind, 10 s to pack) is stopped (SIGTERM to its process group: each
#     script unwinds and releases the experiment's lock) and evaluate_models.py measures the finished models in
#     what is left, with fp32 rows for the teacher only and 20 latency samples (a study's config evaluates its
#     chosen recipes' finished seeds); a run already in its evaluation is left to finish instead, and one in its
#     bench step (a config's [bench]: after the evaluation) is stopped 25 s before the end, its measurements kept;
#  5. packs the small results of $RUNS (no weights, checkpoints, logit caches, predictions or run marks) into
#     $OUT/runs.tgz and the run's log into $OUT/run.log.
# Exit status: 0 once the run has finished, its finished models were evaluated or only its bench was cut short,
# 3 while it still runs,
# 2 when nothing is staged, else the run's.
#
# Staging on this project's lent H200 (15 minutes of device time in all, the machine's start included; at most 10
# minutes a call; no network; /tmp kept only while calls follow each other closely). Build the pack here first, then
# issue the calls back to back:
#   ../shared/tools/fetch-mpnet ~/.cache/hub-offline
#   ../shared/tools/make-device-pack .devpack --mpnet ~/.cache/hub-offline   # says how many chunks: six, c1..c6
#   # on the GPU, one call each, carry [".devpack/cN"]:
#   bash .devpack/cN/stage.sh                                     # N = 1..5: all chunks but the last
#   CODE_COMMIT=C BUDGET_S=B bash lent_gpu.sh configs/full.toml   # carry [".devpack/c6"], the last chunk; timeout_s 600
#   CODE_COMMIT=C BUDGET_S=B bash lent_gpu.sh configs/full.toml   # at once, while it says "still running"
#   # B: the lease's budget_left_s in the previous call's reply (no status call in between: the machine would idle)
#   # C: `git rev-parse --short=12 HEAD` here (the tree that travels has no .git; the records name this commit)
#   # here: tar -xzf <files_at>/runs.tgz -C outputs   (git keeps only the published files)
# The calls, planned: 1, the machine's start then c1 copied to /tmp/stage (60-120 s); 2-5, c2..c5, a 56 MiB piece each
# (4 x ~15 s); 6, c6, then IMDb, the models and the wheels unpacked to /tmp/offline, the run started and waited for
# (585 s); 7, waiting for the run to end (the rest, ~100 s). Call 6 then starts with about 720 s left, leaving call 7
# about 105 s: the run fits if it takes no more than configs/full.toml's planned 600 s plus staging.
# configs/full-study.toml needs no MPNet for its students: `make-device-pack .devpack` (IMDb and MiniLM only: 91 MiB in
# 2 chunks), call 1 `bash .devpack/c1/stage.sh` (the machine's start, 60-120 s), call 2 `CODE_COMMIT=C BUDGET_S=B bash
# lent_gpu.sh configs/full-study.toml` carrying .devpack/c2 (returns at 585 s), call 3 the same at once (150-210 s):
# about 700-750 s for the run, against its plan's 610-870 s (planning figures, not measurements). Its [bench] series
# times the teacher architecture too only when MPNet is staged (`--mpnet`, six chunks: about a minute more). Where the
# study leaves no time, the series takes a lease of its own, one call after staging: `bash .devpack/c6/stage.sh &&
# IMDB_DIR=/tmp/offline/imdb HF_HUB_CACHE=/tmp/offline/hf-cache HF_HUB_OFFLINE=1 timeout 420 python bench.py --config
# configs/full-study.toml --output_dir=/tmp/runs; tar -czf $OUT/bench.tgz -C /tmp/runs full-study/bench
# full-study/logs` (timeout_s 480).
set -euo pipefail
config=${1:?usage: BUDGET_S=SECONDS bash lent_gpu.sh configs/NAME.toml [--name=value ...]}
shift
: "${OUT:?OUT: the folder whose files come back from the GPU machine}"
number() { [[ ${!1:-} =~ ^[0-9]+$ ]] || { echo "error: $1=${!1:-}: give whole seconds, e.g. $1=$2" >&2; exit 2; }; }
number BUDGET_S 715
CALL_S=${CALL_S:-600} EVAL_S=${EVAL_S:-100} MARGIN_S=${MARGIN_S:-30}   # seconds: a call's limit, the fallback, transfers
number CALL_S 600; number EVAL_S 100; number MARGIN_S 30
end=$(( CALL_S - 15 < BUDGET_S - MARGIN_S ? CALL_S - 15 : BUDGET_S - MARGIN_S ))   # this call returns by then
last=$(( BUDGET_S - end - MARGIN_S < 60 ))     # another call would get under a minute: this one is the last
RUNS=$(realpath -m "${RUNS:-/tmp/runs}"); base=$RUNS.run    # results; the run's own files: code/, pid, rc, log
cd "$(dirname "$0")"

for stage in .devpack/c*/stage.sh; do if [ -f "$stage" ]; then bash "$stage"; fi; done
if [ -d /tmp/offline/imdb ]; then
  export IMDB_DIR=${IMDB_DIR:-/tmp/offline/imdb} HF_HUB_CACHE=${HF_HUB_CACHE:-/tmp/offline/hf-cache} \
    HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}
elif [ -z "${IMDB_DIR:-}" ] && [ ! -f "$base/pid" ]; then
  echo "error: nothing staged in /tmp/offline and IMDB_DIR unset: bring the pack's remaining chunks first" >&2; exit 2
fi
export PYTHONUNBUFFERED=1
going() { [ -s "$base/pid" ] && [ ! -e "$base/rc" ] && kill -0 -- "-$(cat "$base/pid")" 2>/dev/null; }
stop_run() {   # SIGTERM to the run's process group (each script unwinds), SIGKILL if still going at second $1
  kill -TERM -- "-$(cat "$base/pid")" 2>/dev/null || true
  while going && [ "$SECONDS" -lt "$1" ]; do sleep 1; done
  kill -KILL -- "-$(cat "$base/pid")" 2>/dev/null || true   # its lock is then taken over by the next run
  for _ in 1 2 3; do going || break; sleep 1; done
}
step() { grep -a '^== ' "$base/log" 2>/dev/null | tail -n 1 | cut -d' ' -f2; }     # the step the run is in
pack() {   # GNU tar says 1 for a file that changed while it was read (a log being written): not a failure
  tar -czf "$OUT/runs.tgz" --warning=no-file-changed -C "$RUNS" --exclude='*.safetensors' --exclude=checkpoints \
    --exclude=teacher_logits --exclude=predictions --exclude='*.partial' --exclude=.lock --exclude=.overwrite-run.json \
    --exclude='timings.md.new.*' --exclude='timings.md.tmp.*' --exclude='.step-start.*' . || [ $? -eq 1 ]
  cp "$base/log" "$OUT/run.log"
}

# a finished run whose results folder is gone (RUNS removed, its run state kept) is started again, not packed as missing
if ! going && { [ "$(cat "$base/rc" 2>/dev/null)" != 0 ] || [ ! -d "$RUNS" ]; }; then
  rm -rf "$base/code" "$base/pid" "$base/rc" && mkdir -p "$base/code" "$RUNS"
  # the copy has no .git: its records name the commit this checkout is at, else CODE_COMMIT (a device has no git)
  python3 -c 'import json, os
try:
    import configurator
    v = configurator.code_version()
except Exception:
    v = None
c = os.environ.get("CODE_COMMIT")
print(json.dumps(v if v is not None or not c else {"commit": c, "modified": None, "given": "CODE_COMMIT"}))' \
    > "$base/code_version" 2>/dev/null || echo null > "$base/code_version"
  if [ "$(cat "$base/code_version")" = null ]; then
    echo "warning: no git here and CODE_COMMIT unset: the records will name no commit" \
         "(give CODE_COMMIT=<git rev-parse --short=12 HEAD, run where git is>)" >&2
  fi
  export KD_CODE_VERSION; KD_CODE_VERSION=$(cat "$base/code_version")
  tar -cf - --exclude=./.devpack --exclude=./.git . | tar -xf - -C "$base/code"
  case $config in /*) ;; *) config=$base/code/$config ;; esac    # a file of the checkout: the copy's
  # the wrapper traps TERM so that it outlives the run's unwinding and records its exit status
  setsid bash -c 'echo $$ > "$1/pid"; trap : TERM; base=$1; shift
                  bash "$base/code/run_experiment.sh" "$@" >> "$base/log" 2>&1; echo $? > "$base/rc"' \
    _ "$base" "$config" --output_dir="$RUNS" "$@" < /dev/null > /dev/null 2>&1 &
  for _ in $(seq 100); do [ -s "$base/pid" ] && break; sleep 0.1; done
  echo "started $(cat "$base/pid"): run_experiment.sh $config --output_dir=$RUNS $* (log: $base/log)"
fi
export KD_CODE_VERSION; KD_CODE_VERSION=$(cat "$base/code_version" 2>/dev/null || echo null)   # a later call's steps too
echo "this call returns by ${end}s; $([ "$last" = 1 ] && echo "the last one the budget leaves room for" || echo "another can follow")"
stop_at=$(( last ? end - 10 - EVAL_S - 30 : end - 10 ))
while going && [ "$SECONDS" -lt "$stop_at" ]; do sleep 2; done
complete=0    # the run's results are complete: finished, or its finished models evaluated, or only its bench cut short
if going && [ "$last" = 1 ]; then
  if [ "$(step)" = evaluate_models ] || [ "$(step)" = bench ]; then   # stopping it to evaluate again would waste it
    while going && [ "$SECONDS" -lt $(( end - 10 )) ]; do      # bench: stopped 25 s before the end, to unwind
      if [ "$(step)" = bench ] && [ "$SECONDS" -ge $(( end - 25 )) ]; then break; fi
      sleep 2
    done
    if going && [ "$(step)" = bench ]; then      # each measurement is saved as it ends, and packed below
      echo "stopping bench.py after ${SECONDS}s: the experiment's results are complete, its measurements so far saved"
      stop_run $(( end - 14 ))          # a long step (a CPU's) delays unwinding
      complete=1
    fi
  else
    echo "stopping the run after ${SECONDS}s, in $(step); evaluating the finished models by $(( end - 10 ))s"
    stop_run $(( SECONDS + 30 ))
    left=$(( end - 10 - SECONDS ))
    if [ "$left" -ge 20 ] && (cd "$base/code" && KD_ALL_STEPS=1 timeout -k 5 "$left" python3 evaluate_models.py \
         --config "$config" --output_dir="$RUNS" "$@" --fp32_models=teacher --latency_samples=20) >> "$base/log" 2>&1
    then complete=1; echo "evaluated the finished models"
    else echo "the evaluation of the finished models failed or ran out of time: see run.log"; fi
  fi
fi
pack
tail -n 12 "$base/log"
if going; then echo "still running after ${SECONDS}s: call again at once to wait for it"; exit 3; fi
rc=$(cat "$base/rc" 2>/dev/null || echo 1)
if [ "$rc" = 0 ] || [ "$complete" = 1 ]; then exit 0; fi
exit "$rc"
