#!/usr/bin/env bash
# Opt-in mutation campaign: mutmut plants small bugs in specnet's core, one at a time, and runs
# the tests that reach each one; docs/mutation.md gets the kill rate per module.
#
#   bash scripts/mutation.sh                       # the core modules (about an hour on 2 cores)
#   bash scripts/mutation.sh specnet/shapes.py     # one module or several
#
# It works on a copy of the working tree in .mutation/ (mutmut rewrites the files it mutates),
# so the checkout is never touched; a campaign stopped half way resumes where it stopped when
# run again on an unchanged tree (delete .mutation/ to start afresh). Tests that only make sense on real processes and clocks (the kill
# harness, distributed runs, the examples, the long fuzz campaigns) are left out: each mutant is
# run in a forked pytest, and those tests spawn their own processes and take minutes.
source "$(dirname "$0")/env.sh" all,dev,mutation
CORE=(specnet/spec.py specnet/shapes.py specnet/weights.py specnet/backends/keras.py
      specnet/backends/torch.py specnet/backends/onnx.py specnet/backends/torch_train.py
      specnet/backends/keras_train.py specnet/backends/_torch_modules.py specnet/train.py
      specnet/evaluate.py)
MODULES=("${@:-${CORE[@]}}")
ROOT=$(pwd)
WORK=$ROOT/.mutation
mkdir -p "$WORK"
git ls-files -z --cached --others --exclude-standard | tar --null -T - -c | tar -x -C "$WORK"
only=$(printf '"%s", ' "${MODULES[@]}")
cat >> "$WORK/pyproject.toml" <<TOML

[tool.mutmut]
source_paths = ["specnet"]
only_mutate = [${only%, }]
also_copy = ["tests", "specs", "schema", "examples", "README.md"]
pytest_add_cli_args_test_selection = ["tests"]
pytest_add_cli_args = ["-p", "no:cacheprovider", "-p", "no:xdist", "-q", "-x",
  "--ignore", "tests/test_crashes.py", "--ignore", "tests/test_distributed.py",
  "--ignore", "tests/test_examples.py", "--ignore", "tests/test_fuzz.py",
  "-k", "not huge_networks and not specs_ship_in_the_wheel and not no_framework_at_import"]
TOML
echo "mutating ${MODULES[*]} in $WORK (progress: $WORK/run.log)" >&2
if ! (cd "$WORK" && "$ROOT/.venv/bin/mutmut" run > run.log 2>&1); then
    tr '\r' '\n' < "$WORK/run.log" | tail -30 >&2
    exit 1
fi
tr '\r' '\n' < "$WORK/run.log" | tail -2 >&2
(cd "$WORK" && "$ROOT/.venv/bin/mutmut" results --all true) > "$WORK/results.txt"
"$ROOT/.venv/bin/python" "$ROOT/scripts/mutation_report.py" "$WORK/results.txt" "${MODULES[@]}"
