#!/usr/bin/env bash
# Run one experiment end to end: teacher -> students -> evaluation, timing each step (students of published soft
# labels, SOFT_LABELS: students -> evaluation), then bench.py where the config file has a [bench] table.
#   bash run_experiment.sh configs/quick.toml [--overwrite=true ...]
# Extra --name=value flags go to every step; a step ignores the names only other steps have.
# The steps run in this checkout's folder: the config file may be given from anywhere, but relative paths in it
# and in the flags (data, output_dir) are taken from the checkout.
# Each step is one of the scripts and can be run alone with the same arguments; each decides for
# itself what is finished (a finished teacher or student is kept unless --overwrite=true). The wall
# time of each step, and how many of its models it trained (the others were kept), is written to
# outputs/<experiment>/timings.md as each step ends (one stopped or crashed too: "not finished: exit N"; one refused,
# exit 2, writes nothing), with a total
# row once all have (the one it replaces is appended to timings-history.md).
set -euo pipefail
config=${1:?usage: bash run_experiment.sh configs/NAME.toml [--name=value ...]}
shift
if [ -f "$config" ]; then config="$(cd "$(dirname "$config")" && pwd)/$(basename "$config")"; fi   # from the caller's folder
cd "$(dirname "$0")"
export KD_ALL_STEPS=1    # each step logs the flags it leaves to the others as information, not as a warning
# the experiment folder, as the scripts will resolve it (file and flags applied); what the students learn from when
# it is not this experiment's teacher (soft labels, configs/full-study.toml, or another experiment's teacher,
# --teacher_dir: no teacher to train); and the steps to run, in configurator.STEPS' order, bench.py only where the
# file has a [bench] table (a training-speed series, run last: the experiment's results come first; checked now, not
# hours later)
settings=$(python3 -c 'import configurator; configurator.use_shared_copies()   # ../shared copies, before the hub is imported
import sys, tomllib, distill_student as d; from configurator import STEPS, configure, run_main
has_bench = 0
def check():    # the file is read (a missing or bad one is a one-line error) before its tables are looked at
    global has_bench
    from configurator import offline_if_hub_unreachable      # the checks below may ask the hub: not for minutes of retries
    why = offline_if_hub_unreachable()
    if why:
        print(f"note: the Hugging Face hub is not reachable ({why}): checking from the local cache", file=sys.stderr)
    cfg = configure(vars(d), ["--config", *sys.argv[1:]])
    teacher = None                                       # the settings of every table first, then what they name
    if not (d.SOFT_LABELS or d.TEACHER_DIR):             # a teacher to train: the length the students will read too
        import fine_tuning_teacher as t
        teacher = configure(vars(t), ["--config", *sys.argv[1:]], "fine_tuning_teacher")
    if "bench" in tomllib.load(open(sys.argv[1], "rb")):
        import bench
        series, has_bench = configure(vars(bench), ["--config", *sys.argv[1:]], "bench"), 1
    d.check_before_teacher(cfg)                          # the students, their transfer texts
    if teacher is not None:
        d.check_length_before_teacher(cfg, teacher)
    if has_bench:
        bench.check_series(series)
    d.check_models_before_teacher(cfg)                   # last: the hub may be asked (typos are said first)
run_main(check)
skip = {"fine_tuning_teacher": bool(d.SOFT_LABELS or d.TEACHER_DIR), "bench": not has_bench}   # a teacher given; no [bench]
given = f"the soft labels in {d.SOFT_LABELS}" if d.SOFT_LABELS else f"the teacher in {d.TEACHER_DIR}" if d.TEACHER_DIR else ""
print(f"{d.OUTPUT_DIR}/{d.EXPERIMENT}", given, " ".join(s for s in STEPS if not skip.get(s)), sep="\n")' \
  "$config" "$@")
out=$(sed -n 1p <<< "$settings") given=$(sed -n 2p <<< "$settings") steps=$(sed -n 3p <<< "$settings")
echo "checked before the first step: the settings, the students and their models, their transfer texts and token lengths"
if [ -n "$given" ]; then echo "(no teacher to train: the students learn from $given)"; fi
mkdir -p "$out"
# this run's own files (named by its pid: a second run of the experiment, refused by the step's lock, must not touch
# them); those of a run that was killed are removed
for f in "$out"/timings.md.new.* "$out"/timings.md.tmp.* "$out"/.step-start.*; do   # each name ends in its run's pid
  [ -e "$f" ] && ! kill -0 "${f##*.}" 2>/dev/null && rm -f "$f"
done
draft="$out/timings.md.new.$$" copy="$out/timings.md.tmp.$$" mark="$out/.step-start.$$"
trap 'rm -f "$draft" "$copy" "$mark"; rmdir "$out" 2>/dev/null || true' EXIT   # a run refused at once leaves no folder
# SIGTERM (`timeout`, a scheduler: the whole process group; or `kill PID` of this script alone, passed on to the step)
# stops the running step; this script waits for that step to unwind (lock released, files closed), records its row,
# and exits, so whatever runs next finds the experiment free (and a GPU's time spent on a stopped step is still
# counted). Each step runs in the background only so that this script hears a signal while it runs (bash runs a trap
# after a foreground command ends); Ctrl-C reaches the step from the terminal itself (KD_STEP_OF_RUN: the step undoes
# the SIGINT-ignoring a background command gets), and a step told twice unwinds once.
stop="" running="" step_pid="" told=""
pass_on() {   # pass_on STATUS: a signal during a step: stop it (TERM; a second one does nothing there), then its row
  stop=$1
  if [ -n "$step_pid" ] && [ "$1" = 143 ] && [ -z "$told" ] && kill -TERM "$step_pid" 2>/dev/null; then
    told=1; echo "stopping $step (pid $step_pid): it unwinds, then this run ends" >&2
  fi
}
trap 'if [ -n "$running" ]; then pass_on 143; else exit 143; fi' TERM   # between steps (no row pending): at once
# SIGINT ignored here too (this script started with & by another without job control): the steps keep ignoring it
step_takes_int=1
ignored=$(awk '/^SigIgn:/ {print $2}' /proc/$$/status 2>/dev/null || true)
if [ $(( 0x${ignored:-0} & 2 )) != 0 ]; then step_takes_int=""; fi
trap 'if [ -n "$running" ]; then pass_on 130; else exit 130; fi' INT
echo "| step | wall time (s) | models trained, of those finished in its folder | finished |" > "$draft"
echo "|---|---|---|---|" >> "$draft"
# "N of M": a step's wall time is training time only for the models it trained, not for kept ones (older metrics.json)
trained() {   # trained() FOLDER...: "N of M" finished models under the folders, N of them written by this step
  local all new   # .partial / .replaced: a save in progress, an old model being replaced
  all=$(find "$@" -maxdepth 2 -name metrics.json -not -path '*.partial/*' -not -path '*.replaced/*' 2>/dev/null | wc -l)
  new=$(find "$@" -maxdepth 2 -name metrics.json -not -path '*.partial/*' -not -path '*.replaced/*' \
        -newer "$mark" 2>/dev/null | wc -l)
  if [ "$all" -gt 0 ]; then echo "$new of $all"; fi
}
published=0
publish() {   # the rows so far as timings.md (a stopped run keeps its finished steps'); the first time, the previous
              # run's table goes to timings-history.md (a re-run's steps may only have kept finished models)
  if [ "$published" = 0 ] && [ -f "$out/timings.md" ]; then { echo; cat "$out/timings.md"; } >> "$out/timings-history.md"; fi
  published=1
  cp "$draft" "$copy" && mv "$copy" "$out/timings.md"
}
t0=$(date +%s)
ended() {   # ended STEP START DID [WHY]: the step's row (WHY: how it stopped, for one that did not finish)
  echo "| $1 | $(( $(date +%s) - $2 )) | $3 | ${4:+$4 at }$(date -u +%FT%TZ) |" >> "$draft"
  publish
}
counted() {   # counted STEP: "N of M" models of the step, N trained by it (teacher and students)
  case $1 in
    fine_tuning_teacher) trained "$out/teacher" ;;
    distill_student) trained "$out/students" ;;
  esac
}
for step in $steps; do
  echo "== $step --config $config $*"
  start=$(date +%s) did=""
  touch "$mark"
  rc=0 running=1
  KD_STEP_OF_RUN=$step_takes_int python3 "$step.py" --config "$config" "$@" < /dev/null & step_pid=$!
  if [ "$stop" = 143 ]; then pass_on 143; fi      # a TERM between the launch and step_pid: passed on now (once)
  while kill -0 "$step_pid" 2>/dev/null; do wait "$step_pid" || true; done   # a trapped signal ends a wait early
  wait "$step_pid" || rc=$?                      # the step's own exit status (bash keeps it for $!)
  step_pid=""
  if [ "$rc" = 2 ]; then exit 2; fi        # refused (a bad input, a lock held, other settings): nothing was done
  if [ "$rc" = 3 ] && [ "$step" = bench ]; then   # the experiment's results are complete: a failed measurement is not its failure
    did="failed (exit 3)"; echo "warning: bench.py: some measurements failed (listed in its levers.md and log);" \
      "the experiment's results are complete" >&2
  elif [ "$rc" != 0 ]; then     # stopped (SIGTERM 143, Ctrl-C 130) or a crash: its row says so
    ended "$step" "$start" "$(counted "$step")" "not finished: exit $rc"
    exit "$rc"
  fi
  ended "$step" "$start" "${did:-$(counted "$step")}"
  running=""                                     # its row written: a SIGTERM from here on exits at once
  if [ -n "$stop" ]; then exit "$stop"; fi       # SIGTERM as a step ended on its own
done
rm -f "$out/.overwrite-run.json"   # every step finished: an --overwrite run of them has ended (runs.overwrite_run)
echo "| total | $(( $(date +%s) - t0 )) | | $(date -u +%FT%TZ) |" >> "$draft"
publish
cat "$out/timings.md"
