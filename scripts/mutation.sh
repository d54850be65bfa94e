#!/usr/bin/env bash
# Opt-in mutation campaign: mutmut plants small bugs in specnet's core, one at a time, and runs
# the tests that reach each one; prints the kill rate per module (docs/mutation.md keeps the
# latest report).
#
#   bash scripts/mutation.sh                       # every core module (hours on 2 cores)
#   bash scripts/mutation.sh specnet/shapes.py     # one module or several
#
# Each module is mutated in its own copy of the working tree under .mutation/<module>/ (mutmut
# rewrites the files it mutates), so the checkout is never touched; a campaign stopped half way
# resumes where it stopped when run again on an unchanged tree (delete .mutation/ to start
# afresh). Each module runs the test files that exercise it (TESTS below), not the whole suite:
# mutmut runs, for each mutant, every selected test that reached the mutated function, and a
# surviving mutant of a function every test calls (load_spec) would otherwise cost a whole suite;
# the framework-free modules (spec, shapes) therefore select framework-free tests only, and
# evaluate.py leaves out tests/test_train.py (each of its tests trains first: a surviving
# mutant of open_run cost minutes; tests/test_evaluate.py reaches the same functions on builds).
# Tests that only make sense on real processes and clocks (the kill harness, distributed runs,
# the examples, the long fuzz campaigns) are never selected, nor is the source scanner
# (tests/test_safety.py), which reads the mutated text, not its behaviour.
source "$(dirname "$0")/env.sh" all,dev,mutation
declare -A TESTS=(
  [specnet/spec.py]="tests/test_spec.py tests/test_bad_specs.py::test_bad_spec
    tests/test_trust.py::test_number_hints_say_remove_the_quotes_only_when_there_are_quotes"
  [specnet/shapes.py]="tests/test_shapes.py tests/test_spec.py tests/test_bad_specs.py
    tests/test_planted.py::test_the_parameter_limit_holds_at_its_exact_boundary
    tests/test_trust.py::test_which_shapes_look_channels_first
    tests/test_trust.py::test_class_names_of_a_network tests/test_cli.py"
  [specnet/weights.py]="tests/test_weights.py tests/test_backends.py::test_round_trip_is_bit_identical
    tests/test_generated_source.py::test_native_files_say_they_are_pytorch_and_belong_to_one_network
    tests/test_backends.py::test_safetensors_file_is_read_identically_by_the_library_and_numpy
    tests/test_planted.py::test_safetensors_headers_are_padded_to_8_bytes_whatever_their_length
    tests/test_planted.py::test_bias_initializers_draw_as_keras_does
    tests/test_planted.py::test_initial_draws_follow_the_layer_name_not_its_position"
  [specnet/backends/keras.py]="tests/test_backends.py tests/test_layout_traps.py tests/test_build.py
    tests/test_generated_source.py tests/test_trust.py::test_emitted_sources_compile_and_expose_logits"
  [specnet/backends/torch.py]="tests/test_backends.py tests/test_layout_traps.py tests/test_build.py
    tests/test_planted.py tests/test_generated_source.py
    tests/test_trust.py::test_emitted_sources_compile_and_expose_logits"
  [specnet/backends/onnx.py]="tests/test_onnx.py tests/test_planted.py tests/test_backends.py"
  [specnet/backends/torch_train.py]="tests/test_training_parity.py tests/test_planted.py
    tests/test_torch_ranks.py tests/test_graphs.py::test_checkpoints_are_keyed_by_name_and_old_ones_still_resume
    tests/test_generated_source.py::test_a_torch_checkpoint_missing_a_part_is_refused
    tests/test_generated_source.py::test_the_torch_trainer_takes_its_options"
  [specnet/backends/keras_train.py]="tests/test_training_parity.py tests/test_planted.py
    tests/test_keras_trainer.py tests/test_graphs.py::test_checkpoints_are_keyed_by_name_and_old_ones_still_resume
    tests/test_torch_ranks.py::test_a_binary_logit_of_exactly_zero_is_a_no_as_keras_counts_it
    tests/test_generated_source.py::test_the_keras_trainer_trains_what_it_was_given"
  [specnet/backends/_torch_modules.py]="tests/test_planted.py tests/test_training_parity.py
    tests/test_backends.py tests/test_generated_source.py"
  [specnet/train.py]="tests/test_train.py tests/test_planted.py tests/test_findings.py"
  [specnet/evaluate.py]="tests/test_evaluate.py tests/test_planted.py tests/test_findings.py
    tests/test_trust.py"
)
# Tests whose code under test runs in child processes (the ranks of a distributed run): mutmut
# cannot see what they reach, so they run afterwards on the survivors only
# (scripts/mutation_processes.py).
declare -A PROCESS_TESTS=(
  [specnet/backends/torch_train.py]="tests/test_distributed.py::test_two_gloo_workers_match_one_process
    tests/test_distributed.py::test_a_distributed_run_resumes"
  [specnet/backends/keras_train.py]="tests/test_distributed.py::test_keras_mirrored_strategy_matches_one_device
    tests/test_distributed.py::test_keras_multi_worker_reads_tf_config"
)
CORE=(specnet/spec.py specnet/shapes.py specnet/weights.py specnet/backends/keras.py
      specnet/backends/torch.py specnet/backends/onnx.py specnet/backends/torch_train.py
      specnet/backends/keras_train.py specnet/backends/_torch_modules.py specnet/train.py
      specnet/evaluate.py)
MODULES=("${@:-${CORE[@]}}")
ROOT=$(pwd)
for module in "${MODULES[@]}"; do
    selected=${TESTS[$module]:-tests}
    WORK=$ROOT/.mutation/$(basename "$module" .py)
    mkdir -p "$WORK"
    git ls-files -z --cached --others --exclude-standard | tar --null -T - -c | tar -x -C "$WORK"
    tests=$(printf '"%s", ' $selected)
    cat >> "$WORK/pyproject.toml" <<TOML

[tool.mutmut]
source_paths = ["specnet"]
only_mutate = ["$module"]
also_copy = ["tests", "specs", "schema", "examples", "scripts", "benchmarks", ".ci", "README.md",
             "constraints.txt", "pyproject.toml"]
pytest_add_cli_args_test_selection = [${tests%, }]
pytest_add_cli_args = ["-p", "no:cacheprovider", "-p", "no:xdist", "-q", "-x",
  "-k", "not huge_networks and not specs_ship_in_the_wheel and not ctrl_c"]
timeout_multiplier = 4.0
# a worker's first framework call initialises it (a second or two): not a timeout
timeout_constant = 30.0
# workers fork from a process that has collected the tests and imported the frameworks
# (SPECNET_PRELOAD, see tests/conftest.py) but run nothing: TensorFlow and PyTorch thread pools
# do not survive a fork, and a worker forked after they have run can hang
process_isolation = "forkserver"
forkserver_warmup = "collect"
TOML
    case $module in  # the framework-free modules run framework-free tests only
        specnet/spec.py|specnet/shapes.py) preload= ;;
        *) preload=torch,tensorflow,keras ;;
    esac
    echo "mutating $module with $selected (progress: $WORK/run.log)" >&2
    if ! (cd "$WORK" && SPECNET_PRELOAD=$preload "$ROOT/.venv/bin/mutmut" run > run.log 2>&1); then
        tr '\r' '\n' < "$WORK/run.log" | tail -30 >&2
        exit 1
    fi
    tr '\r' '\n' < "$WORK/run.log" | tail -1 >&2
    (cd "$WORK" && "$ROOT/.venv/bin/mutmut" results --all true) > "$WORK/results.txt"
    # SPECNET_MUTATION_PROCESSES=0 leaves the (hours-long) process pass out
    if [[ -n ${PROCESS_TESTS[$module]:-} && ${SPECNET_MUTATION_PROCESSES:-1} != 0 ]]; then
        echo "process tests on the survivors of $module (progress: $WORK/processes.log)" >&2
        "$ROOT/.venv/bin/python" "$ROOT/scripts/mutation_processes.py" "$WORK" \
            ${PROCESS_TESTS[$module]} > "$WORK/processes.log" || exit 1
    fi
done
cat "$ROOT"/.mutation/*/results.txt > "$ROOT/.mutation/all-results.txt"
"$ROOT/.venv/bin/python" "$ROOT/scripts/mutation_report.py" "$ROOT/.mutation/all-results.txt" \
    "${MODULES[@]}"
