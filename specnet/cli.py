"""The ``specnet`` command: a thin shell over the library. Each verb parses, calls, prints.

Exit codes: 0 success, 2 a bad spec or bad usage, 1 a runtime failure, 130 interrupted.
A :class:`~specnet.errors.SpecnetError` is printed as one message with no traceback
(``--debug`` shows it). The CLI imports no framework until a verb needs one.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from specnet import __version__
from specnet.errors import SpecError, SpecnetError, UsageError

if TYPE_CHECKING:  # for annotations only: the CLI imports the library lazily, per verb
    from specnet.shapes import Limits, Plan

__all__ = ["main"]

EXAMPLES = """\
examples:
  specnet init my_net.yaml                     write a starter spec
  specnet validate specs/*.yaml                check specs (exit 2 on the first bad one)
  specnet summary specs/seed_cnn.yaml          layers, output shapes, parameters, FLOPs
  specnet summary specs/seed_cnn.yaml --json   the same as JSON
  specnet schema -o specnet.schema.json        JSON Schema for editors (draft-07)
  specnet build specs/seed_cnn.yaml --backend torch --emit-source model.py
                                               native model + canonical weights in build/seed_cnn/
  specnet build specs/seed_cnn.yaml --backend keras --weights build/seed_cnn
                                               the same weights in the other framework
  specnet train specs/seed_cnn.yaml --backend torch   train; writes runs/seed_cnn/torch-1
  specnet export --onnx                        export the most recent build or run
  specnet parity specs/seed_cnn.yaml           Keras, PyTorch, ONNX Runtime: the same function?

exit codes: 0 ok, 1 runtime failure, 2 bad spec or usage. Add --debug for tracebacks.
"""


class _Parser(argparse.ArgumentParser):
    """argparse that raises :class:`UsageError` (exit 2, one line) instead of exiting itself."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def _limits(args: argparse.Namespace) -> Limits:
    from specnet.shapes import Limits

    return Limits(
        max_params=args.max_params,
        max_activation_bytes=int(args.max_activation_mb * 2**20),
    )


def _plan(path: str, args: argparse.Namespace) -> Plan:
    from specnet.shapes import infer
    from specnet.spec import load_spec

    return infer(load_spec(path), _limits(args))


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
    if args.output is None:
        sys.stdout.write(text)
    else:
        atomic_write_text(args.output, text, overwrite=args.force)
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


def _cmd_init(args: argparse.Namespace) -> int:
    from specnet._io import atomic_write_text
    from specnet.schema import json_schema_text
    from specnet.templates import starter_spec

    target = Path(args.path)
    atomic_write_text(target, starter_spec(target.stem), overwrite=args.force)
    print(f"wrote {target}")
    schema = target.parent / "specnet.schema.json"
    if not schema.exists():
        atomic_write_text(schema, json_schema_text(), overwrite=False)
        print(f"wrote {schema} (editors with yaml-language-server validate as you type)")
    print(f"next: specnet summary {target}")
    return 0


def _cmd_build(args: argparse.Namespace) -> int:
    from specnet.build import build

    limits = _limits(args)
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
    from specnet.data import parse_data_option
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
    result = train(
        args.spec,
        args.backend,
        data=parse_data_option(args.data) if args.data else None,
        epochs=args.epochs,
        out=args.out,
        resume=args.resume,
        weights=args.weights,
        force=args.force,
        progress=Progress(mode),
        limits=_limits(args),
        options=TrainOptions(args.compile, args.device, args.strategy, args.replicas),
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
        print(json.dumps({"finished": summary}))
    elif not args.quiet:
        metrics = ", ".join(f"{k} {v:.4f}" for k, v in summary.items() if isinstance(v, float))
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
    from specnet.data import anchored, parse_data_option
    from specnet.evaluate import evaluate

    data = anchored(parse_data_option(args.data), Path.cwd()) if args.data else None
    result = evaluate(args.run, data, args.backend)
    print(json.dumps(result.to_dict(), indent=2) if args.json else result.text())
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from specnet.evaluate import predict, predictions_text

    results = predict(args.run, args.inputs, args.backend)
    print(json.dumps(results, indent=2) if args.json else predictions_text(results))
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
        output=args.output,
        force=args.force,
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

    runtimes = args.backends.split(",") if args.backends else None
    report = parity(args.target, runtimes, batch=args.batch)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.text())
    return 0 if report.ok else 1


def _add_limits(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-params",
        type=int,
        default=100_000_000,
        metavar="N",
        help="refuse networks with more parameters (default 100,000,000)",
    )
    parser.add_argument(
        "--max-activation-mb",
        type=float,
        default=4096.0,
        metavar="MB",
        help="refuse networks whose activations for one batch exceed this (default 4096)",
    )


def _parser() -> argparse.ArgumentParser:
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

    validate = verbs.add_parser("validate", help="check specs: fields, shapes, limits")
    validate.add_argument("specs", nargs="+", metavar="SPEC")
    _add_limits(validate)
    validate.set_defaults(handler=_cmd_validate)

    summary = verbs.add_parser("summary", help="print layers, output shapes, params and FLOPs")
    summary.add_argument("spec", metavar="SPEC")
    summary.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _add_limits(summary)
    summary.set_defaults(handler=_cmd_summary)

    schema = verbs.add_parser("schema", help="print the JSON Schema (draft-07) of spec files")
    schema.add_argument("-o", "--output", metavar="FILE", help="write it to FILE")
    schema.add_argument("--force", action="store_true", help="replace FILE if it exists")
    schema.set_defaults(handler=_cmd_schema)

    build = verbs.add_parser(
        "build", help="build the native model and canonical weights in a build directory"
    )
    build.add_argument("spec", metavar="SPEC")
    build.add_argument("--backend", choices=["keras", "torch"], default="keras")
    build.add_argument("--out", metavar="DIR", help="build directory (default build/<spec name>)")
    build.add_argument(
        "--seed", type=int, metavar="N", help="initializer seed (default train.seed)"
    )
    build.add_argument(
        "--weights", metavar="FILE", help="canonical weights (a file or a build/run directory)"
    )
    build.add_argument("--emit-source", metavar="FILE", help="also write standalone Python source")
    build.add_argument("--force", action="store_true", help="replace what --out or FILE holds")
    _add_limits(build)
    build.set_defaults(handler=_cmd_build)

    train = verbs.add_parser("train", help="train a spec on its data; writes a run directory")
    train.add_argument("spec", nargs="?", metavar="SPEC")
    train.add_argument("--backend", choices=["keras", "torch"], default="keras")
    train.add_argument("--data", metavar="SOURCE", help="synthetic, digits, FILE.npz or a folder")
    train.add_argument("--epochs", type=int, metavar="N", help="override train.epochs")
    train.add_argument(
        "--out", metavar="RUN", help="run directory (default runs/<spec>/<backend>-N)"
    )
    train.add_argument("--resume", metavar="RUN", help="continue RUN from its last checkpoint")
    train.add_argument("--weights", metavar="FILE", help="start from canonical weights")
    train.add_argument("--force", action="store_true", help="replace what --out holds")
    train.add_argument(
        "--compile",
        action="store_true",
        help="XLA (Keras) or torch.compile (PyTorch); opt-in, see benchmarks/README.md",
    )
    train.add_argument("--device", choices=["cpu", "cuda", "auto"], default="cpu")
    train.add_argument(
        "--strategy",
        choices=["mirrored", "multi-worker"],
        help="Keras: MirroredStrategy (GPUs) or MultiWorkerMirroredStrategy (TF_CONFIG)",
    )
    train.add_argument(
        "--replicas", type=int, default=0, metavar="N", help="mirrored on CPU: N logical devices"
    )
    train.add_argument("--nproc", type=int, default=1, metavar="N", help="PyTorch workers (DDP)")
    train.add_argument("--nnodes", type=int, default=1, metavar="N", help="machines (DDP)")
    train.add_argument("--node-rank", type=int, default=0, metavar="I", help="this machine's rank")
    train.add_argument("--rdzv-endpoint", metavar="HOST:PORT", help="rendezvous for --nnodes > 1")
    train.add_argument("--quiet", action="store_true", help="print nothing while training")
    train.add_argument("--json", action="store_true", help="print one JSON object per epoch")
    _add_limits(train)
    train.set_defaults(handler=_cmd_train)

    evaluate = verbs.add_parser("evaluate", help="loss, accuracy, per-class report of a run")
    evaluate.add_argument("run", metavar="RUN")
    evaluate.add_argument(
        "--data", metavar="SOURCE", help="synthetic, digits, FILE.npz or a folder"
    )
    evaluate.add_argument("--backend", choices=["keras", "torch"], help="default: the run's")
    evaluate.add_argument("--json", action="store_true")
    evaluate.set_defaults(handler=_cmd_evaluate)

    predict = verbs.add_parser("predict", help="classify images or an .npz with a run")
    predict.add_argument("run", metavar="RUN")
    predict.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or .npz (x)")
    predict.add_argument(
        "--backend", choices=["keras", "torch", "onnx"], help="default: onnx (ONNX Runtime)"
    )
    predict.add_argument("--json", action="store_true")
    predict.set_defaults(handler=_cmd_predict)

    export = verbs.add_parser("export", help="export a build or run to ONNX (one I/O contract)")
    export.add_argument("run", nargs="?", metavar="RUN", help="default: the most recent one")
    export.add_argument("--onnx", action="store_true", help="export to ONNX (the only format)")
    export.add_argument("--via", choices=["keras", "torch", "direct"], help="default: the run's")
    export.add_argument("--layout", choices=["nhwc", "nchw"], default="nhwc")
    export.add_argument("--opset", type=int, default=18, metavar="N", help="13 or newer (18)")
    export.add_argument("-o", "--output", metavar="FILE", help="default: RUN/model.onnx")
    export.add_argument("--force", action="store_true", help="replace FILE if it exists")
    export.add_argument("--json", action="store_true", help="print the signature as JSON")
    export.set_defaults(handler=_cmd_export)

    parity = verbs.add_parser("parity", help="compare Keras, PyTorch and ONNX runtimes")
    parity.add_argument("target", metavar="SPEC|RUN")
    parity.add_argument("--backends", metavar="LIST", help="comma-separated runtimes (default all)")
    parity.add_argument("--batch", type=int, default=8, metavar="N")
    parity.add_argument("--json", action="store_true")
    parity.set_defaults(handler=_cmd_parity)

    init = verbs.add_parser("init", help="write a starter spec")
    init.add_argument("path", nargs="?", default="spec.yaml", metavar="PATH")
    init.add_argument("--force", action="store_true", help="replace PATH if it exists")
    init.set_defaults(handler=_cmd_init)
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
