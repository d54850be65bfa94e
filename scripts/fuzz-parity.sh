#!/usr/bin/env bash
# Opt-in long campaign of random valid networks on every runtime (tests/test_random_parity.py,
# which CI runs with 200): N networks through Keras, PyTorch and ONNX Runtime in both layouts,
# N/50 through every export path, N/20 trained two steps on both backends.
#
#   bash scripts/fuzz-parity.sh 5000                 # report in benchmarks/results/
#   bash scripts/fuzz-parity.sh 5000 my-report.md
#
# The report says how many networks each check ran, every layer kind and field value drawn
# (how often), and the failures with hypothesis's shrunk network. A failure found is fixed and
# its network kept under tests/regressions/ (README: "What the campaigns found").
source "$(dirname "$0")/env.sh" all,dev
N=${1:-5000}
REPORT=${2:-benchmarks/results/fuzz-parity-$N.md}
mkdir -p "$(dirname "$REPORT")"
COVERAGE=$(mktemp)
LOG=${REPORT%.md}.log  # pytest's whole output, beside the report
trap 'rm -f "$COVERAGE"' EXIT
began=$(date +%s)
set +e
SPECNET_PARITY_SPECS=$N SPECNET_PARITY_EXPORTED=$((N / 50 > 0 ? N / 50 : 1)) \
SPECNET_PARITY_TRAINED=$((N / 20 > 0 ? N / 20 : 1)) SPECNET_PARITY_REPORT=$COVERAGE \
    .venv/bin/python -m pytest -q -p no:cacheprovider -W ignore::UserWarning \
    tests/test_random_parity.py >"$LOG" 2>&1
status=$?
set -e
.venv/bin/python - "$COVERAGE" "$LOG" "$status" "$(($(date +%s) - began))" "$N" >"$REPORT" <<'PY'
import json, re, sys
coverage, log, status, seconds, n = sys.argv[1:]
data = json.loads(open(coverage).read() or "{}")
text = open(log).read()
print(f"# Random-network parity campaign: {n} networks\n")
print(f"{'passed' if status == '0' else 'FAILED'} in {int(seconds) / 60:.1f} min\n")
print("| check | networks |\n|---|---|")
for what, count in data.get("runs", {}).items():
    print(f"| {what} | {count:,} |")
print("\n| layer kind | drawn |\n|---|---|")
for kind, count in data.get("kinds", {}).items():
    print(f"| {kind} | {count:,} |")
print(f"\n{len(data.get('fields', {}))} distinct field values drawn.\n")
if data.get("aborted"):
    print("## Networks TensorFlow's oneDNN aborted on (the first five)\n")
    for spec in data["aborted"]:
        print("```json\n" + json.dumps(spec) + "\n```\n")
failures = re.findall(r"(?ms)^(_{5,} test_\w+ _{5,}.*?)(?=^_{5,} |^=+ short test summary)", text)
print(f"## Failures: {len(failures)}\n")
for failure in failures:
    shrunk = re.findall(r"(?ms)Falsifying example: .*?(?=^\S|\Z)", failure)
    lines = [line for line in failure.splitlines() if line.startswith("E ")][:12]
    print("```\n" + "\n".join(lines + shrunk[:1]) + "\n```\n")
PY
echo "report: $REPORT (pytest's output: $LOG)"
exit $status
