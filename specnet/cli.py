"""The ``specnet`` command: a thin shell over the library. Each verb parses, calls, prints.

Exit codes: 0 success, 2 a bad spec or bad usage, 1 a runtime failure, 130 interrupted.
A :class:`~specnet.errors.SpecnetError` is printed as one message with no traceback
(``--debug`` shows it). The CLI imports no framework until a verb needs one.
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import re
import shlex
import sys
import textwrap
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specnet import __version__
from specnet._io import json_safe
from specnet.errors import NothingToDo, SpecError, SpecnetError, UsageError

if TYPE_CHECKING:  # for annotations only: the CLI imports the library lazily, per verb
    from specnet.shapes import Limits, Plan

__all__ = ["main"]

EXAMPLES = """\
examples (they work anywhere: the example specs ship with specnet):
  specnet init net.yaml --example seed_cnn     copy a bundled example spec (--list names them)
  specnet init net.yaml --from-folder photos/  a starter spec for an image folder of classes
  specnet validate net.yaml                    check it: every problem, located (exit 2 if any)
  specnet summary net.yaml --json              layers, output shapes, parameters, FLOPs
  specnet build net.yaml --backend torch --emit-source model.py
                                               native model + canonical weights in build/seed_cnn/
  specnet build net.yaml --backend keras --weights build/seed_cnn
                                               the same weights in the other framework
  specnet train net.yaml --backend torch --epochs 3   train; writes runs/seed_cnn/torch-1
  specnet evaluate runs/seed_cnn/torch-1       loss, accuracy, per-class report
  specnet predict runs/seed_cnn/torch-1 photos/ --format csv   classify a folder of images
  specnet export --onnx                        export the most recent build or run
  specnet parity net.yaml                      Keras, PyTorch, ONNX Runtime: the same function?
  specnet import model.json --weights w.h5     an old Keras (or ONNX) model as a spec and build
  specnet verify build/seed_cnn                re-check the build's parity certificate here
  specnet plot net.yaml -o net.svg             a picture of the network (.svg or .png)
  specnet diff net.yaml build/seed_cnn         layers, fields, shapes and weights that changed
  specnet bench net.yaml                       every runtime's speed on this machine

exit codes: 0 ok, 1 runtime failure, 2 bad spec or usage. Add --debug for tracebacks.
"""


class _Parser(argparse.ArgumentParser):
    """argparse that raises :class:`UsageError` (exit 2, one line) instead of exiting itself,
    with a "did you mean" for a mistyped verb or choice."""

    def error(self, message: str) -> None:  # type: ignore[override]
        wrong = re.match(r"argument (\S+): invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if wrong:
            choices = re.findall(r"'([^']*)'", wrong.group(3)) or [
                c.strip() for c in wrong.group(3).split(",")
            ]
            close = difflib.get_close_matches(wrong.group(2), choices, n=1, cutoff=0.5)
            what = "verb" if wrong.group(1) == "VERB" else wrong.group(1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            message = f"unknown {what} {wrong.group(2)!r}{hint} (choose from {', '.join(choices)})"
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def _limits(args: argparse.Namespace) -> Limits:
    from specnet.shapes import Limits

    return Limits(
        max_params=args.max_params,
        max_activation_bytes=int(args.max_activation_mb * 2**20),
    )


def _plan(path: str, args: argparse.Namespace, warn: bool = True) -> Plan:
    from specnet.shapes import advice, infer
    from specnet.spec import load_spec

    plan = infer(load_spec(path), _limits(args))
    if warn:
        for issue in advice(plan.spec):
            print(issue, file=sys.stderr)
    return plan


def _warn_spec(path: str | None) -> None:
    """Print a spec's warnings (verbs that load it inside the library)."""
    if path is None:
        return
    from specnet.shapes import advice
    from specnet.spec import load_spec

    for issue in advice(load_spec(path)):
        print(issue, file=sys.stderr)


def _say(args: argparse.Namespace) -> Callable[[str], None]:
    """Progress lines on stderr, one per step; nothing with --quiet or --json."""
    if getattr(args, "quiet", False) or getattr(args, "json", False):
        return lambda line: None
    return lambda line: print(line, file=sys.stderr, flush=True)


def _data(args: argparse.Namespace, base: Path | None = None) -> Any:
    """``--data`` (with ``--pixel-range``) as a data source, or None."""
    from specnet.data import anchored, parse_data_option
    from specnet.spec import NpzData

    pixel_range = getattr(args, "pixel_range", None)
    if args.data is None:
        if pixel_range is not None:
            raise UsageError("--pixel-range needs --data FILE.npz (or set data.pixel_range)")
        return None
    source = parse_data_option(args.data)
    if pixel_range is not None:
        if not isinstance(source, NpzData):
            raise UsageError("--pixel-range applies to .npz data only")
        source = source.model_copy(update={"pixel_range": pixel_range})
    return anchored(source, base) if base is not None else source


def _source(text: str | None) -> Any:
    """``--val-data`` / ``--test-data``: a data source as ``--data`` reads one, or None."""
    from specnet.data import parse_data_option

    return None if text is None else parse_data_option(text)


def _cmd_validate(args: argparse.Namespace) -> int:
    failed = 0
    for path in args.specs:
        try:
            plan = _plan(path, args)
        except SpecError as exc:
            print(exc, file=sys.stderr)
            failed += 1
            continue
        print(
            f"{path}: ok ({plan.name}: {len(plan.layers)} layers, {plan.total_params:,} params, "
            f"output {plan.output_shape})"
        )
    if failed and len(args.specs) > 1:
        print(f"{failed} of {len(args.specs)} specs are invalid", file=sys.stderr)
    return 2 if failed else 0


def _cmd_summary(args: argparse.Namespace) -> int:
    from specnet.shapes import summary_text

    plan = _plan(args.spec, args)
    if args.json:
        print(json.dumps(plan.to_dict(), indent=2))
    else:
        print(summary_text(plan))
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    from specnet._io import atomic_write_text
    from specnet.schema import json_schema_text

    text = json_schema_text()
    if args.out is None:
        sys.stdout.write(text)
    else:
        atomic_write_text(args.out, text, overwrite=args.force)
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _cmd_init(args: argparse.Namespace) -> int:
    from specnet._io import atomic_write_text
    from specnet.schema import json_schema_text
    from specnet.templates import bundled_specs, example_spec, folder_spec, starter_spec

    if args.list:
        print("\n".join(bundled_specs()))
        return 0
    target = Path(args.path)
    if args.from_folder is not None and args.example is not None:
        raise UsageError("init takes --from-folder or --example, not both")
    if not args.force and target.exists():  # before reading a folder of images
        raise UsageError(f"{target}: already exists; pass --force to replace it")
    if args.from_folder is not None:
        text = folder_spec(target, Path(args.from_folder))
    elif args.example is not None:
        text = example_spec(args.example, target)
    else:
        text = starter_spec(target.stem, str(target))
    atomic_write_text(target, text, overwrite=args.force)
    print(f"wrote {target}")
    schema = target.parent / "specnet.schema.json"
    if not schema.exists():
        atomic_write_text(schema, json_schema_text(), overwrite=False)
        print(f"wrote {schema} (editors with yaml-language-server validate as you type)")
    print(f"next: specnet summary {shlex.quote(str(target))}")
    return 0


def _cmd_build(args: argparse.Namespace) -> int:
    from specnet.build import build

    limits = _limits(args)
    _warn_spec(args.spec)
    result = build(
        args.spec,
        args.backend,
        out=args.out,
        seed=args.seed,
        weights=args.weights,
        force=args.force,
        emit_source=args.emit_source,
        limits=limits,
    )
    plan = result.plan
    for note in result.notes:
        print(f"specnet: {note}", file=sys.stderr)
    print(
        f"built {plan.name} with {result.backend}: {plan.total_params:,} params, "
        f"output {plan.output_shape}"
    )
    for path in result.files:
        print(f"  {path}")
    return 0


_LAUNCH_FLAGS = {"--nproc": 1, "--nnodes": 1, "--node-rank": 1, "--rdzv-endpoint": 1}


def _without_launch_flags(argv: list[str]) -> list[str]:
    out, skip = [], 0
    for arg in argv:
        if skip:
            skip -= 1
            continue
        name = arg.split("=", 1)[0]
        if name in _LAUNCH_FLAGS:
            skip = 0 if "=" in arg else _LAUNCH_FLAGS[name]
            continue
        out.append(arg)
    return out


def _cmd_train(args: argparse.Namespace) -> int:
    import os

    from specnet.backends import TrainOptions
    from specnet.progress import Progress
    from specnet.train import train

    if (args.nproc > 1 or args.nnodes > 1) and "WORLD_SIZE" not in os.environ:
        if args.backend != "torch" and args.resume is None:
            raise UsageError("--nproc/--nnodes launch PyTorch workers; use --backend torch")
        from specnet.distributed import launch

        return launch(
            _without_launch_flags(args.argv),
            args.nproc,
            args.nnodes,
            args.node_rank,
            args.rdzv_endpoint,
        )

    mode = "quiet" if args.quiet else "json" if args.json else "auto"
    if args.spec is None and args.resume is None:
        raise UsageError("train needs a SPEC or --resume RUN")
    if args.resume is None:
        _warn_spec(args.spec)
    overrides: dict[str, Any] = {
        key: getattr(args, key)
        for key in ("batch_size", "learning_rate", "seed", "set")
        if getattr(args, key) is not None
    }
    result = train(
        args.spec,
        args.backend,
        data=_data(args),
        epochs=args.epochs,
        out=args.out,
        resume=args.resume,
        weights=args.weights,
        force=args.force,
        progress=Progress(mode),
        limits=_limits(args),
        options=TrainOptions(args.compile, args.device, args.strategy, args.replicas),
        overrides=overrides,
        tensorboard=args.tensorboard or None,
        val_data=_source(args.val_data),
        test_data=_source(args.test_data),
    )
    worker = int(os.environ.get("WORLD_SIZE", "1")) > 1
    history = result.history
    summary = {
        "run": str(result.out),
        "backend": result.backend,
        **{key: values[-1] for key, values in history.items() if values},
    }
    if worker and os.environ.get("RANK", "0") != "0":
        pass  # rank 0 reports for the run
    elif args.json:
        print(json.dumps({"finished": json_safe(summary)}, allow_nan=False))
    elif not args.quiet:
        metrics = ", ".join(
            f"{k} {v:.4f}" for k, v in summary.items() if isinstance(v, float) and math.isfinite(v)
        )
        print(f"trained {result.plan.name} with {result.backend}: {metrics}")
        print(f"run directory: {result.out}")
    if worker:
        # Every file is written and fsynced; skipping interpreter teardown avoids an
        # intermittent C++ abort ("terminate called without an active exception") in the
        # process group's threads at exit, seen once in CI under load.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from specnet.evaluate import evaluate

    result = evaluate(args.run, _data(args, Path.cwd()), args.backend)
    if args.json:
        print(json.dumps(json_safe(result.to_dict()), indent=2, allow_nan=False))
    else:
        print(result.text())
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from specnet.evaluate import predict, predictions_csv, predictions_text

    form = "json" if args.json else args.format
    results = predict(args.run, args.inputs, args.backend, args.top_k, args.pixel_range)
    if form == "json":
        print(json.dumps(results, indent=2, allow_nan=False))
    elif form == "csv":
        sys.stdout.write(predictions_csv(results))
    else:
        print(predictions_text(results, args.top_k or 4))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from specnet.export import describe, export, latest_run

    if not args.onnx:
        raise UsageError("export needs a format: --onnx")
    run = args.run
    if run is None:
        run = latest_run()
        print(f"exporting the most recent build or run: {run}", file=sys.stderr)
    path = export(
        run,
        via=args.via,
        layout=args.layout,
        opset=args.opset,
        output=args.out,
        force=args.force,
        log=_say(args),
    )
    info = describe(path)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        ((name, shape),) = info["inputs"].items()  # the contract: one input, one output
        ((out_name, out_shape),) = info["outputs"].items()
        meta = info["metadata"]
        print(
            f"wrote {path}: {name} {shape} -> {out_name} {out_shape}, opset {info['opset']}, "
            f"{info['nodes']} nodes, via {meta.get('via')}, layout {meta.get('layout')}"
        )
    return 0


def _cmd_parity(args: argparse.Namespace) -> int:
    from specnet.parity import parity

    runtimes = [name.strip() for name in args.backends.split(",")] if args.backends else None
    report = parity(args.target, runtimes, batch=args.batch, log=_say(args), layers=args.layers)
    if args.json:
        print(json.dumps(json_safe(report.to_dict()), indent=2))
    else:
        print(report.text() + (f"\n\n{report.layer_text()}" if report.layers else ""))
    return 0 if report.ok else 1


def _cmd_verify(args: argparse.Namespace) -> int:
    from specnet.certificate import verify

    report = verify(args.build)
    if args.json:
        checks = [check.__dict__ for check in report.checks]
        print(
            json.dumps({"folder": str(report.folder), "ok": report.ok, "checks": checks}, indent=2)
        )
    else:
        print(report.text())
    return 0 if report.ok else 1


def _cmd_import(args: argparse.Namespace) -> int:
    from specnet.importers import import_model

    result = import_model(
        args.source,
        weights=args.weights,
        out=args.out,
        kernel_convention=args.kernel_convention,
        backend=args.backend,
        force=args.force,
        limits=_limits(args),
    )
    for note in result.notes:
        print(f"specnet: {note}", file=sys.stderr)
    plan = result.plan
    convention = f", kernels: {result.convention}" if result.convention else ""
    print(
        f"imported {plan.name} ({result.source_format}{convention}): {len(plan.layers)} layers, "
        f"{plan.total_params:,} params, input {plan.input_shape}, output {plan.output_shape}"
    )
    for path in result.files:
        print(f"  {path}")
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    from specnet.diagram import plot

    path = plot(args.target, args.out, collapse_blocks=args.collapse_blocks, force=args.force)
    print(f"wrote {path}")
    return 0


def _cmd_diff(args: argparse.Namespace) -> int:
    from specnet.diff import diff

    result = diff(args.a, args.b)
    print(json.dumps(json_safe(result.to_dict()), indent=2) if args.json else result.text())
    return 0 if result.same else 1


def _cmd_bench(args: argparse.Namespace) -> int:
    from specnet.bench import bench

    runtimes = [name.strip() for name in args.runtimes.split(",")] if args.runtimes else None
    report = bench(args.target, runtimes, batch=args.batch, rounds=args.rounds, log=_say(args))
    print(json.dumps(json_safe(report.to_dict()), indent=2) if args.json else report.text())
    return 0


# ----------------------------------------------------------------------------- option types


def _number(kind: Callable[[str], Any], low: float | None, what: str) -> Callable[[str], Any]:
    """An argparse type: ``kind`` (int or float), at least ``low`` (exclusive for floats
    with low 0), with a message that says what was expected."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, received {text!r}") from None
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected {what}, received {text!r}")
        if low is not None and (value < low or (kind is float and low == 0 and value == 0)):
            raise argparse.ArgumentTypeError(f"expected {what}, received {text!r}")
        return value

    return parse


POSITIVE = _number(int, 1, "a positive integer")
NATURAL = _number(int, 0, "a non-negative integer")
POSITIVE_REAL = _number(float, 0, "a positive number")


def _pixel_range(text: str) -> tuple[float, float]:
    parts = text.replace(":", ",").split(",")
    try:
        low, high = (float(part) for part in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected LOW,HIGH such as 0,255, received {text!r}"
        ) from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH with LOW < HIGH, received {text!r}")
    return low, high


def _add_limits(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-params",
        type=POSITIVE,
        default=100_000_000,
        metavar="N",
        help="refuse networks with more parameters (default: %(default)s)",
    )
    parser.add_argument(
        "--max-activation-mb",
        type=POSITIVE_REAL,
        default=4096.0,
        metavar="MB",
        help="refuse networks whose activations for one training batch exceed this "
        "(default: %(default)s)",
    )


def _add_out(parser: argparse.ArgumentParser, metavar: str, help: str) -> None:
    """``-o/--out``: the one spelling of an output path on every verb."""
    parser.add_argument("-o", "--out", dest="out", metavar=metavar, help=help)


# ----------------------------------------------------------------------------- the parser

VERB_EXAMPLES = {
    "validate": "specnet validate net.yaml other.yaml",
    "summary": "specnet summary net.yaml --json",
    "schema": "specnet schema -o specnet.schema.json",
    "init": "specnet init net.yaml --example seed_cnn\n"
    "  specnet init net.yaml --from-folder photos/",
    "build": "specnet build net.yaml --backend torch --emit-source model.py",
    "train": "specnet train net.yaml --backend torch --epochs 3 --batch-size 64",
    "evaluate": "specnet evaluate runs/seed_cnn/torch-1 --json",
    "predict": "specnet predict runs/seed_cnn/torch-1 photos/ --format csv --top-k 2",
    "export": "specnet export runs/seed_cnn/torch-1 --onnx --via direct -o model.onnx",
    "parity": "specnet parity net.yaml --backends keras,torch,onnx",
    "import": "specnet import my_model.json --weights my_model_weights.h5 -o build/my_model\n"
    "  specnet import model.h5\n"
    "  specnet import old_theano.json --weights w.h5 --kernel-convention theano",
    "verify": "specnet verify build/seed_cnn --json",
    "plot": "specnet plot specs/applications/resnet50.yaml -o resnet50.svg --collapse-blocks",
    "diff": "specnet diff build/seed_cnn runs/seed_cnn/torch-1",
    "bench": "specnet bench net.yaml --batch 32 --rounds 7 --runtimes keras,torch,ort:direct",
}


def _verb(verbs: Any, name: str, help: str, description: str) -> argparse.ArgumentParser:
    """A verb's parser: its description wrapped, its example kept as written."""
    parser: argparse.ArgumentParser = verbs.add_parser(
        name,
        help=help,
        description=textwrap.fill(description, 88),
        epilog=f"example{'s' if chr(10) in VERB_EXAMPLES[name] else ''}:\n  {VERB_EXAMPLES[name]}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


def _parser() -> argparse.ArgumentParser:
    from specnet.bench import RUNTIMES as BENCH_RUNTIMES

    parser = _Parser(
        prog="specnet",
        description="A compiler for neural-network specs: validate, infer shapes, build, "
        "train, export and check parity across Keras, PyTorch and ONNX.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"specnet {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)

    validate = _verb(
        verbs,
        "validate",
        "check specs: fields, shapes, limits",
        "Load and check every SPEC (all of them, reporting each problem with its file, line, "
        "column and field), infer its shapes and check the size limits; warnings (such as a "
        "channels-first input_shape) go to stderr. Imports no framework. Exit 2 if any is "
        "invalid.",
    )
    validate.add_argument("specs", nargs="+", metavar="SPEC", help="spec files (YAML)")
    _add_limits(validate)
    validate.set_defaults(handler=_cmd_validate)

    summary = _verb(
        verbs,
        "summary",
        "print layers, output shapes, params and FLOPs",
        "A table like Keras's model.summary(), plus FLOPs per example and activation memory "
        "per batch. Imports no framework.",
    )
    summary.add_argument("spec", metavar="SPEC", help="a spec file")
    summary.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _add_limits(summary)
    summary.set_defaults(handler=_cmd_summary)

    schema = _verb(
        verbs,
        "schema",
        "print the JSON Schema (draft-07) of spec files",
        "The JSON Schema editors use to complete and check specs as you type.",
    )
    _add_out(schema, "FILE", "write it to FILE (default: print it)")
    schema.add_argument("--force", action="store_true", help="replace FILE if it exists")
    schema.set_defaults(handler=_cmd_schema)

    init = _verb(
        verbs,
        "init",
        "write a starter spec",
        "Write a commented starter spec (the classic Keras CNN) and, beside it, the JSON "
        "Schema for editors. With --from-folder, input_shape and class_names come from an "
        "image folder (one subfolder per class) and data points at it; with --example, it is "
        "one of the specs that ship with specnet (--list names them).",
    )
    init.add_argument(
        "path",
        nargs="?",
        default="spec.yaml",
        metavar="PATH",
        help="the spec to write (default: %(default)s)",
    )
    init.add_argument(
        "--from-folder",
        metavar="DIR",
        help="fill input_shape, class_names and data from an image folder",
    )
    init.add_argument(
        "--example",
        metavar="NAME",
        help="copy a bundled example spec instead (seed_cnn, digits_cnn, keras/mnist_convnet, …)",
    )
    init.add_argument("--list", action="store_true", help="list the bundled examples and exit")
    init.add_argument("--force", action="store_true", help="replace PATH if it exists")
    init.set_defaults(handler=_cmd_init)

    build = _verb(
        verbs,
        "build",
        "build the native model and canonical weights in a build directory",
        "Build SPEC in one framework and write a build directory: the native model, canonical "
        "weights (weights.safetensors, readable by every backend), the resolved spec and a "
        "summary. Building the same spec and weights with the other backend into the same "
        "folder keeps both native models.",
    )
    build.add_argument("spec", metavar="SPEC", help="a spec file")
    build.add_argument(
        "--backend",
        choices=["keras", "torch"],
        default="keras",
        help="the framework (default: %(default)s)",
    )
    _add_out(build, "DIR", "build directory (default: build/<spec name>)")
    build.add_argument(
        "--seed",
        type=NATURAL,
        metavar="N",
        help="initializer seed (default: the spec's train.seed)",
    )
    build.add_argument(
        "--weights",
        metavar="FILE|DIR",
        help="canonical weights: a .safetensors file or a build/run directory "
        "(default: drawn from the spec's initializers)",
    )
    build.add_argument(
        "--emit-source",
        metavar="FILE",
        help="also write standalone Python source for the framework",
    )
    build.add_argument(
        "--force", action="store_true", help="replace what the output folder or FILE holds"
    )
    _add_limits(build)
    build.set_defaults(handler=_cmd_build)

    train = _verb(
        verbs,
        "train",
        "train a spec on its data; writes a run directory",
        "Train SPEC with Keras's compile/fit semantics in either framework and write a run "
        "directory (weights, native model, metrics, curves, checkpoints). --resume continues "
        "a run exactly where it stopped. --epochs, --batch-size, --learning-rate and --seed "
        "override the spec's train section for this run and are recorded in its resolved spec.",
    )
    train.add_argument("spec", nargs="?", metavar="SPEC", help="a spec file (not with --resume)")
    train.add_argument(
        "--backend",
        choices=["keras", "torch"],
        help="the framework (default: keras; on --resume, the run's)",
    )
    train.add_argument(
        "--data",
        metavar="SOURCE",
        help="synthetic, digits, FILE.npz or an image folder "
        "(default: the spec's data section, else synthetic)",
    )
    train.add_argument(
        "--pixel-range",
        type=_pixel_range,
        metavar="LOW,HIGH",
        help="what the .npz pixel values span, mapped to [0, 1] "
        "(default: uint8 ÷ 255, uint16 ÷ 65535; floats must be in [0, 1])",
    )
    train.add_argument("--epochs", type=POSITIVE, metavar="N", help="override train.epochs")
    train.add_argument("--batch-size", type=POSITIVE, metavar="N", help="override train.batch_size")
    train.add_argument(
        "--learning-rate",
        type=POSITIVE_REAL,
        metavar="LR",
        help="override the optimizer's learning_rate",
    )
    train.add_argument("--seed", type=NATURAL, metavar="N", help="override train.seed")
    train.add_argument(
        "--set",
        action="append",
        metavar="FIELD=VALUE",
        help="set any spec field for this run, e.g. train.callbacks[0].patience=3 or "
        "layers[4].rate=0.3 (the value read as YAML; repeatable)",
    )
    _add_out(train, "RUN", "run directory (default: runs/<spec name>/<backend>-N)")
    train.add_argument("--resume", metavar="RUN", help="continue RUN from its last checkpoint")
    train.add_argument(
        "--weights",
        metavar="FILE|DIR",
        help="start from canonical weights (a file or a build/run directory)",
    )
    train.add_argument(
        "--force", action="store_true", help="replace the run the output folder holds"
    )
    train.add_argument(
        "--compile",
        action="store_true",
        help="XLA (Keras) or torch.compile (PyTorch); opt-in, see benchmarks/README.md",
    )
    train.add_argument(
        "--device",
        choices=["cpu", "cuda", "auto"],
        default="cpu",
        help="where to train (default: %(default)s; cuda fails without a GPU)",
    )
    train.add_argument(
        "--strategy",
        choices=["mirrored", "multi-worker"],
        help="Keras: MirroredStrategy (GPUs) or MultiWorkerMirroredStrategy (TF_CONFIG)",
    )
    train.add_argument(
        "--replicas",
        type=NATURAL,
        default=0,
        metavar="N",
        help="with --strategy mirrored on CPU: N logical devices (default: %(default)s, one)",
    )
    train.add_argument(
        "--nproc",
        type=POSITIVE,
        default=1,
        metavar="N",
        help="PyTorch DDP workers on this machine (default: %(default)s)",
    )
    train.add_argument(
        "--nnodes",
        type=POSITIVE,
        default=1,
        metavar="N",
        help="machines taking part (default: %(default)s)",
    )
    train.add_argument(
        "--node-rank",
        type=NATURAL,
        default=0,
        metavar="I",
        help="this machine's rank (default: %(default)s)",
    )
    train.add_argument(
        "--rdzv-endpoint", metavar="HOST:PORT", help="rendezvous address for --nnodes > 1"
    )
    train.add_argument(
        "--val-data",
        metavar="SOURCE",
        help="validation data of its own, as --data takes it (validation_split then unused)",
    )
    train.add_argument(
        "--test-data", metavar="SOURCE", help="a held-out test set, scored by evaluate"
    )
    train.add_argument(
        "--tensorboard",
        action="store_true",
        help="write TensorBoard event files to RUN/tensorboard (tensorboard --logdir reads them)",
    )
    train.add_argument("--quiet", action="store_true", help="print nothing while training")
    train.add_argument("--json", action="store_true", help="print one JSON object per epoch")
    _add_limits(train)
    train.set_defaults(handler=_cmd_train)

    evaluate = _verb(
        verbs,
        "evaluate",
        "loss, accuracy, per-class report of a run",
        "Loss, accuracy, per-class precision/recall/F1 and the confusion matrix of a trained "
        "run (or a build), on its data's test split if it has one, else its validation split, "
        "or on all of --data.",
    )
    evaluate.add_argument("run", metavar="RUN", help="a run or build directory")
    evaluate.add_argument(
        "--data",
        metavar="SOURCE",
        help="synthetic, digits, FILE.npz or an image folder (default: the run's own data)",
    )
    evaluate.add_argument(
        "--pixel-range",
        type=_pixel_range,
        metavar="LOW,HIGH",
        help="what the .npz pixel values span (see train)",
    )
    evaluate.add_argument(
        "--backend", choices=["keras", "torch"], help="the framework (default: the run's)"
    )
    evaluate.add_argument("--json", action="store_true", help="print JSON instead of a report")
    evaluate.set_defaults(handler=_cmd_evaluate)

    predict = _verb(
        verbs,
        "predict",
        "classify images, folders of them, or an .npz with a run",
        "The class and probabilities of each input: image files, folders (every image below "
        "them, recursively; dot-entries skipped) or .npz files (array x). Images are read as "
        "for training: RGB (or grey), bilinear resize to the input size, scaled to [0, 1].",
    )
    predict.add_argument("run", metavar="RUN", help="a run or build directory")
    predict.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="image files, folders or .npz files"
    )
    predict.add_argument(
        "--backend",
        choices=["keras", "torch", "onnx"],
        help="the runtime (default: onnx, ONNX Runtime on the direct graph)",
    )
    predict.add_argument(
        "--format",
        choices=["text", "json", "csv"],
        default="text",
        help="output format (default: %(default)s)",
    )
    predict.add_argument("--json", action="store_true", help="the same as --format json")
    predict.add_argument(
        "--top-k",
        type=POSITIVE,
        metavar="K",
        help="show the K most likely classes (default: 4 in text, all in json and csv)",
    )
    predict.add_argument(
        "--pixel-range",
        type=_pixel_range,
        metavar="LOW,HIGH",
        help="what .npz pixel values span (see train)",
    )
    predict.set_defaults(handler=_cmd_predict)

    export = _verb(
        verbs,
        "export",
        "export a build or run to ONNX (one I/O contract)",
        "Write an ONNX file that meets specnet's I/O contract (one float32 input 'input', one "
        "output 'output', dynamic batch), check it with onnx.checker, load it in ONNX Runtime "
        "and compare it with the native model before it takes its final name.",
    )
    export.add_argument(
        "run",
        nargs="?",
        metavar="RUN",
        help="a run or build directory (default: the most recent one)",
    )
    export.add_argument("--onnx", action="store_true", help="export to ONNX (the only format)")
    export.add_argument(
        "--via",
        choices=["keras", "torch", "direct"],
        help="the exporter (default: the run's backend)",
    )
    export.add_argument(
        "--layout",
        choices=["nhwc", "nchw"],
        default="nhwc",
        help="the input's layout (default: %(default)s)",
    )
    export.add_argument(
        "--opset",
        type=POSITIVE,
        default=18,
        metavar="N",
        help="ONNX opset, 13 or newer (default: %(default)s)",
    )
    _add_out(export, "FILE", "the ONNX file (default: RUN/model.onnx)")
    export.add_argument("--force", action="store_true", help="replace FILE if it exists")
    export.add_argument("--json", action="store_true", help="print the signature as JSON")
    export.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    export.set_defaults(handler=_cmd_export)

    parity = _verb(
        verbs,
        "parity",
        "compare Keras, PyTorch and ONNX runtimes",
        "Put the same weights (seeded for a SPEC, trained for a RUN) into every runtime, run "
        "one batch through all of them and compare every pair on the outputs before softmax. "
        "Exit 1 if any pair is over tolerance.",
    )
    parity.add_argument("target", metavar="SPEC|RUN", help="a spec file or a run/build directory")
    parity.add_argument(
        "--backends", metavar="LIST", help="comma-separated runtimes, at least two (default: all)"
    )
    parity.add_argument(
        "--batch",
        type=POSITIVE,
        default=8,
        metavar="N",
        help="examples in the batch (default: %(default)s)",
    )
    parity.add_argument(
        "--layers",
        action="store_true",
        help="also compare every layer's output (Keras, PyTorch, direct ONNX) and name the "
        "first layer beyond tolerance; a failing parity does this by itself",
    )
    parity.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parity.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parity.set_defaults(handler=_cmd_parity)

    imp = _verb(
        verbs,
        "import",
        "turn a Keras or ONNX model file into a spec and a build directory",
        "Import SOURCE — a Keras 1/2/3 JSON config (with --weights: a Keras 1/2 save_weights "
        "HDF5 or a Keras 3 .weights.h5), a full-model .h5, a .keras archive or an ONNX file — "
        "into a build directory (spec, canonical weights, summary, certificate) that export, "
        "predict, evaluate, parity and build --weights accept, with spec.yaml as a person would "
        "write it. Needs no TensorFlow or Keras; never runs code from the file.",
    )
    imp.add_argument("source", metavar="SOURCE", help="the model file")
    imp.add_argument("--weights", metavar="FILE", help="the weights of a JSON config (HDF5)")
    _add_out(imp, "DIR", "build directory (default: build/<model name>)")
    imp.add_argument(
        "--kernel-convention",
        choices=["theano", "tensorflow"],
        help="which backend wrote the weights, where the file does not say: Theano's "
        "kernels are flipped and its 'same' padding differs",
    )
    imp.add_argument(
        "--backend",
        choices=["keras", "torch", "onnx"],
        help="also build this framework's native model (default: none; the folder needs no "
        "framework)",
    )
    imp.add_argument("--force", action="store_true", help="replace what the output folder holds")
    _add_limits(imp)
    imp.set_defaults(handler=_cmd_import)

    verify = _verb(
        verbs,
        "verify",
        "re-check a build's parity certificate",
        "Re-check BUILD/parity.json on this machine: the spec, every weight tensor and model "
        "file against their recorded SHA-256, and every runtime's outputs on the recorded batch "
        "(bit for bit with the recorded versions on the recorded machine, else within float32 "
        "tolerance). Exit 1 naming the tensor, file or runtime that disagrees.",
    )
    verify.add_argument("build", metavar="BUILD", help="a build or run directory")
    verify.add_argument("--json", action="store_true", help="print JSON instead of a list")
    verify.set_defaults(handler=_cmd_verify)

    plot = _verb(
        verbs,
        "plot",
        "draw the network (SVG or PNG, no Graphviz)",
        "Draw SPEC or BUILD top to bottom: one box per layer (name, kind, output shape, "
        "parameters, coloured by kind), merges as joins, blocks framed. Needs no Graphviz; "
        "PNG needs matplotlib.",
    )
    plot.add_argument("target", metavar="SPEC|BUILD", help="a spec file or a build/run directory")
    _add_out(plot, "FILE", "the picture: .svg or .png (default: <spec name>.svg here)")
    plot.add_argument("--collapse-blocks", action="store_true", help="one box per block use")
    plot.add_argument("--force", action="store_true", help="replace an existing file")
    plot.set_defaults(handler=_cmd_plot)

    diff = _verb(
        verbs,
        "diff",
        "what changed between two specs or builds",
        "Compare A and B (spec files or build/run directories): layers added, removed or "
        "changed field by field, shapes and parameters, the spec's other fields, and with "
        "weights on both sides the max difference per tensor. Exit 0 when the same, 1 when "
        "they differ.",
    )
    diff.add_argument("a", metavar="A", help="a spec file or a build/run directory")
    diff.add_argument("b", metavar="B", help="a spec file or a build/run directory")
    diff.add_argument("--json", action="store_true", help="print JSON instead of text")
    diff.set_defaults(handler=_cmd_diff)

    bench = _verb(
        verbs,
        "bench",
        "measure every runtime's speed here",
        "Time every runtime (Keras, PyTorch, ONNX Runtime on each export path) at batch 1 and "
        "batch N, and each backend's training step, interleaved over rounds; print medians "
        "with their spread, the resident memory each added, and the fastest.",
    )
    bench.add_argument("target", metavar="SPEC|BUILD", help="a spec file or a build/run directory")
    bench.add_argument(
        "--runtimes", metavar="LIST", help="comma-separated, of " + ", ".join(BENCH_RUNTIMES)
    )
    bench.add_argument(
        "--batch",
        type=POSITIVE,
        default=32,
        metavar="N",
        help="throughput batch (default: %(default)s)",
    )
    bench.add_argument(
        "--rounds",
        type=POSITIVE,
        default=5,
        metavar="N",
        help="interleaved rounds (default: %(default)s)",
    )
    bench.add_argument("--json", action="store_true", help="print JSON instead of a table")
    bench.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    bench.set_defaults(handler=_cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (the console script passes it to ``sys.exit``)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args_list
    try:
        args = _parser().parse_args(args_list)
        args.argv = args_list
        run: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
        if run is None:
            _parser().print_help()
            return 2
        return run(args)
    except NothingToDo as exc:
        print(f"specnet: {exc}", file=sys.stderr)
        return 0
    except SpecnetError as exc:
        if debug:
            traceback.print_exc()
        print(f"specnet: error: {exc}" if not isinstance(exc, SpecError) else exc, file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("specnet: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    entry()
