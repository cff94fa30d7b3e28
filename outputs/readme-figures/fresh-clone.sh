#!/usr/bin/env bash
# The README's times of its own commands, as a new user meets them on a fresh clone: the test suite, the smoke
# experiment, an ONNX export, the "A teacher you already have" recipe (its README block run as written, the smoke
# teacher standing in for the user's classifier); then every section of measure.py (which needs the smoke run).
#   git clone <this repository> fresh && cd fresh
#   IMDB_DIR=../shared/data/imdb HF_HUB_CACHE=../shared/hf-cache HF_HUB_OFFLINE=1 bash outputs/readme-figures/fresh-clone.sh
# Writes, beside this file: runs-results.json (each command's wall seconds, the commit, the machine and how busy
# it was), smoke-results.md and timings.md (the smoke run's table and step times), figures-results.json (measure.py).
# About 20 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=outputs/readme-figures
: "${IMDB_DIR:?set IMDB_DIR, HF_HUB_CACHE and HF_HUB_OFFLINE as in the command above}"
if [ -e outputs/smoke ] || [ -e outputs/mine-kd ] || [ -e models/my-sentiment-model ]; then
  echo "error: outputs/smoke, outputs/mine-kd or models/my-sentiment-model exists: run this on a fresh clone, whose" \
    "times are a new user's" >&2
  exit 2
fi
logs=$(mktemp -d /tmp/readme-figures.XXXXXX)     # each command's output
declare -A took
timed() {    # timed NAME command...: runs it, its wall seconds into took[NAME], its output into $logs/NAME.log
  local name=$1 start=$SECONDS
  shift
  echo "== $name: $*"
  "$@" > "$logs/$name.log" 2>&1 || { echo "error: $name failed: $logs/$name.log" >&2; exit 1; }
  took[$name]=$((SECONDS - start))
  echo "   ${took[$name]} s"
}
timed tests python -m pytest -q -p no:cacheprovider tests
timed smoke bash run_experiment.sh configs/smoke.toml
timed export python export.py --model=outputs/smoke/students/L2
mkdir -p models && cp -r outputs/smoke/teacher models/my-sentiment-model     # the user's own classifier
recipe=$logs/recipe.sh
awk '/^cat > configs\/mine-kd.toml/,/^python export.py --model=outputs\/mine-kd/' README.md > "$recipe"
if ! grep -q '^bash run_experiment.sh configs/mine-kd.toml' "$recipe" || ! tail -n 1 "$recipe" | grep -q '^python export.py'; then
  echo "error: README.md's *A teacher you already have* block is not where this script looks: update its awk line" >&2
  exit 2
fi
timed own_teacher_steps bash -c "$(sed '$d' "$recipe")"   # the block but its last line, the export
timed own_teacher_export bash -c "$(tail -n 1 "$recipe")"
cp outputs/smoke/results.md $here/smoke-results.md
cp outputs/smoke/timings.md $here/timings.md
python3 - "$here/runs-results.json" "$(declare -p took)" <<'EOF'
import json, re, sys
sys.path[:0] = [".", "outputs/readme-figures"]
from measure import machine                     # the commit, CPU, torch, load and date, as each section records them
record = {"seconds": {k: int(v) for k, v in re.findall(r'\[(\w+)\]="?(\d+)"?', sys.argv[2])}} | machine()
open(sys.argv[1], "w").write(json.dumps(record, indent=1) + "\n")
print(json.dumps(record))
EOF
python $here/measure.py        # last: its sections are saved one by one, a failing one on its own
