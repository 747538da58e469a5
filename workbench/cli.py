"""Command line: python -m workbench (or prune-workbench)
{demos,layers,evaluate,sensitivity,finetune,export,latency}."""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import pandas as pd

from workbench.evaluate import Report, Workbench
from workbench.models import list_demos, load_demo
from workbench.progress import Progress, drain
from workbench.pruning.plan import PlanError, PruningPlan

T = TypeVar("T")


def add_source_options(command: argparse.ArgumentParser) -> None:
    """--demo, or your own --model and --data: for every subcommand that needs a Workbench."""
    command.add_argument("--demo", default="digits-cnn", help="a built-in demo model")
    command.add_argument(
        "--model",
        help="your model instead of a demo: a torch.export .pt2, a TorchScript file, "
        "safetensors or .pt weights (with --arch), or a Hugging Face folder",
    )
    command.add_argument("--arch", help="for a weights file: path/to/file.py:factory")
    command.add_argument(
        "--trust-pickle",
        action="store_true",
        help="allow a whole pickled model: unpickling runs code from the file, so only for "
        "files you trust",
    )
    command.add_argument(
        "--data",
        help="validation data for --model: .pt/.npz tensors, a CSV, a zip of image folders "
        "(one per class) or a text file",
    )
    command.add_argument(
        "--target", help="the CSV column (or array) of targets; '' for none (label-free)"
    )
    command.add_argument(
        "--val-fraction",
        type=float,
        help="share of --data kept for validation; the seeded rest is the training split "
        "(finetune); a file with its own split keeps it",
    )


class _Status:
    """One rewritable progress line on a terminal (nothing in a log), cleared when done."""

    def __init__(self) -> None:
        self.live = sys.stderr.isatty()
        self.width = 0

    def show(self, line: str) -> None:
        if self.live:
            print("\r" + line.ljust(self.width), end="", file=sys.stderr, flush=True)
            self.width = max(self.width, len(line))

    def clear(self) -> None:
        if self.width:
            print("\r" + " " * self.width + "\r", end="", file=sys.stderr, flush=True)
            self.width = 0

    def drain(self, events: Iterable[Progress[T]], line: Callable[[Any], str]) -> T:
        """Run `events` to the end, showing `line(event)` for each step; returns the result."""

        def shown() -> Iterator[Progress[T]]:
            for event in events:
                if not event.finished:
                    self.show(line(event))
                yield event

        try:
            return drain(shown())
        finally:
            self.clear()


def _bench(args: argparse.Namespace) -> Workbench:
    """The Workbench of --demo, or of --model with --data (subcommands without those: --demo)."""
    return _built(args)[0]


NO_TRAINING_DATA = (
    "no training data: a demo trains on its own split; for --data give a file with its own "
    "split (x_train/y_train arrays) or --val-fraction below 1 (training on the validation data "
    "would report a leak)"
)


def _built(args: argparse.Namespace, need_train: bool = False) -> tuple[Workbench, Any]:
    """The Workbench and the training split (None when the data has none; with `need_train`,
    an error before anything is built or said)."""
    model_path, data_path = getattr(args, "model", None), getattr(args, "data", None)
    if model_path is None and data_path is None:
        demo = load_demo(args.demo)
        if need_train and not len(demo.train):
            raise ValueError(NO_TRAINING_DATA)
        bench = Workbench(demo.model, demo.val, class_names=demo.meta.class_names)
        return bench, demo.train if len(demo.train) else None
    if model_path is None or data_path is None:
        raise ValueError("--model and --data go together: your model and its validation data")
    from workbench import io as wio  # lazily: demos need none of it

    model = wio.load_model(model_path, architecture=args.arch, trust_pickle=args.trust_pickle)
    data = wio.load_data(
        data_path,
        target=args.target,
        tokenizer=model.tokenizer,
        class_names=model.class_names or None,
        val_fraction=args.val_fraction,
    )
    if need_train and data.train is None:
        raise ValueError(NO_TRAINING_DATA)
    # What was read is said only once it all worked: a bad input prints one error line alone.
    notes = [f"model: {line}" for line in model.summary()]
    notes += [f"data: {line}" for line in data.info.notes]
    built = _Status().drain(
        wio.build_workbench(model, data, name=Path(model_path).name),
        lambda event: f"[{event.done}/{event.total}] {event.message}",
    )
    notes += [
        f"{finding.level}: {finding.message}"
        for finding in built.report.findings
        if finding.level in ("warning", "info")
    ]
    for line in notes:
        print(line, file=sys.stderr)
    return built.bench, built.train


def _cmd_demos(args: argparse.Namespace) -> int:
    rows = []
    for name in list_demos():
        meta = load_demo(name).meta
        rows.append(
            {
                "name": name,
                "task": meta.task,
                "input": meta.input_kind,
                "params": meta.params,
                "title": meta.title,
            }
        )
    print(pd.DataFrame(rows).to_string(index=False))
    return 0


def _cmd_layers(args: argparse.Namespace) -> int:
    table = _bench(args).layers
    if args.json:
        print(table.to_json(orient="records", indent=2))
    else:
        print(table.to_string(index=False, formatters={"share": "{:.1%}".format}))
    return 0


def _read_plan(path: str) -> PruningPlan:
    """A plan file: JSON, or YAML by its suffix (the Prune page's plan exports)."""
    from workbench.ship.export import read_plan

    try:
        text = Path(path).read_text()
    except OSError as error:
        raise PlanError(f"cannot read plan file {path!r}: {error.strerror}") from None
    return read_plan(text, Path(path).name)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    plan = _read_plan(args.plan) if args.plan else PruningPlan()
    bench = _bench(args)
    report = bench.evaluate(plan)
    if args.track is not None:
        _keep(args, bench, report)
    print(json.dumps(report.to_dict(), indent=2, allow_nan=False))
    return 0


def _keep(
    args: argparse.Namespace,
    bench: Workbench,
    report: Report,
    source: str = "cli",
    texts: dict[str, str] | None = None,
    *,
    trained: Any = None,
    files: dict[str, Path] | None = None,
) -> None:
    """--track: keep the report as a run (the model is its demo name or its file's name), with
    the compacted model's figures (of `trained`, a recovered model, when given) and `files`."""
    from workbench.track import Store, fingerprint, ship_metrics

    store = Store(args.track or None)
    model = Path(args.model).name if getattr(args, "model", None) else args.demo
    run_id = store.keep(
        report, model=model, data=fingerprint(bench), source=source, texts=texts, files=files,
        metrics=ship_metrics(bench, report.plan, model=trained),
    )  # fmt: skip
    print(f"kept as run {run_id} ({model}) in {store.uri}", file=sys.stderr)


#: The columns `runs` prints, in order, when the runs have them.
RUN_COLUMNS = {
    "run_id": "run",
    "tags.model": "model",
    "tags.mlflow.runName": "name",
    "tags.source": "source",
    "start_time": "kept",
    "metrics.accuracy": "accuracy",
    "metrics.r2": "r2",
    "metrics.agreement": "agreement",
    "metrics.loss": "loss",
    "metrics.sparsity": "sparsity",
    "metrics.sparse_bytes": "sparse_bytes",
    "metrics.compressed_bytes": "compressed_bytes",
    "metrics.flops_effective": "flops",
}


def _cmd_runs(args: argparse.Namespace) -> int:
    from workbench.track import Store

    runs = Store(args.track or None).runs(args.demo)
    table = runs[[c for c in RUN_COLUMNS if c in runs]].rename(columns=RUN_COLUMNS)
    if args.json:  # json, not to_json: every digit of each metric, and NaN as null
        table = table.assign(kept=[t.isoformat() for t in table["kept"]]) if len(table) else table
        records = table.astype(object).where(table.notna(), None).to_dict(orient="records")
        print(json.dumps(records, indent=2))
    elif table.empty:
        print("no runs" + (f" of {args.demo}" if args.demo else ""), file=sys.stderr)
    else:
        table["run"] = table["run"].str[:8]
        table["kept"] = table["kept"].dt.strftime("%Y-%m-%d %H:%M:%S")
        print(table.to_string(index=False))
    return 0


def _cmd_search(args: argparse.Namespace) -> int:
    from workbench.track import Store, fingerprint, search_iter, search_tags

    parts = [p.strip() for p in args.objective.split(",") if p.strip()]
    if len(parts) != 2:
        raise ValueError("--objective is a metric and a cost, e.g. accuracy,sparse_bytes")
    bench = _bench(args)
    result = _Status().drain(
        search_iter(
            bench, metric=parts[0], cost=parts[1], trials=args.trials, seed=args.seed,
            method=args.method, granularity=args.granularity, upper=args.max_sparsity,
            locked=[n.strip() for n in (args.lock or "").split(",") if n.strip()],
            runner=_runner(args), backend=args.backend, tolerance=args.tolerance,
        ),
        lambda event: f"[{event.done}/{event.total}] {event.message}",
    )  # fmt: skip
    if args.track is not None:
        store, model = Store(args.track or None), args.demo
        if getattr(args, "model", None):
            model = Path(args.model).name
        tags = search_tags(parts[0], parts[1], args.backend)
        for number, report in enumerate(result.reports):
            store.keep(report, model=model, data=fingerprint(bench), source="search",
                       name=f"search trial {number}", tags=tags)  # fmt: skip
        print(f"kept {len(result.reports)} trials as runs in {store.uri}", file=sys.stderr)
    front = [(n, r) for n, r in enumerate(result.reports) if result.front[n]]
    rows = [
        {"trial": n, result.metric: r.metrics[result.metric], result.cost: r.size[result.cost],
         "plan": r.plan.to_dict()}
        for n, r in sorted(front, key=lambda pair: pair[1].size[result.cost])
    ]  # fmt: skip
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        table = pd.DataFrame(rows)
        table["plan"] = [
            ",".join(f"{n}:{v:g}" for n, v in row["plan"]["sparsity"].items()) for row in rows
        ]
        print(f"{len(rows)} of {len(result.reports)} trials on the front:", file=sys.stderr)
        print(table.to_string(index=False))
    return 0


def _add_search_command(commands: argparse._SubParsersAction) -> None:
    command = commands.add_parser(
        "search", help="search per-layer sparsities for the best metric at each size (Optuna)"
    )
    add_source_options(command)
    command.add_argument(
        "--objective", default="accuracy,sparse_bytes",
        help="a metric to maximise (minimise if lower is better) and a cost to minimise: "
        "sparse_bytes, compressed_bytes, int8_bytes or flops_effective",
    )  # fmt: skip
    command.add_argument("--trials", type=int, default=50, help="exact evaluations (default 50)")
    command.add_argument("--seed", type=int, default=0, help="the sampler's seed")
    command.add_argument("--method", default="l1", help="pruning criterion (default l1)")
    command.add_argument("--granularity", default="unstructured", help="default unstructured")
    command.add_argument("--lock", help="layers kept dense, comma-separated")
    command.add_argument(
        "--max-sparsity", type=float, default=0.95, help="each layer's upper bound (0.95)"
    )
    command.add_argument(
        "--backend", choices=["optuna", "flaml"], default="optuna",
        help="optuna: TPE, both objectives (default); flaml: FLAML's CFO, lexicographic (the "
        "metric first, then the cost among trials within --tolerance of the best metric)",
    )  # fmt: skip
    command.add_argument(
        "--tolerance", type=float, default=0.01, help="flaml: the metric's slack (default 0.01)"
    )
    command.add_argument("--json", action="store_true", help="print the front as JSON records")
    _add_ray_option(command, "the trials")
    _add_track_option(command, "keep every trial as a run in")
    command.set_defaults(run=_cmd_search)


def _add_ray_option(command: argparse.ArgumentParser, what: str) -> None:
    _add_optional_value(
        command, "--ray", "ADDRESS", f"run {what} as Ray tasks (the scale extra), each worker "
        "building its own workbench: on the cluster at ADDRESS (e.g. auto), or without one on "
        "a local instance",
    )  # fmt: skip


def _runner(args: argparse.Namespace) -> Any:
    """--ray: a RayRunner whose workers build what --demo or --model/--data name; else None."""
    if getattr(args, "ray", None) is None:
        return None
    from workbench.scale import RayRunner, Recipe

    recipe = Recipe(
        demo=args.demo, model=args.model, data=args.data, arch=args.arch,
        trust_pickle=args.trust_pickle, target=args.target, val_fraction=args.val_fraction,
    )  # fmt: skip
    if recipe.model is not None:  # workers may run elsewhere: the paths they read in full
        recipe = replace(recipe, model=str(Path(recipe.model).resolve()))
        recipe = replace(recipe, data=str(Path(recipe.data).resolve()))
    return RayRunner(recipe, args.ray or None)


def _add_track_option(command: argparse.ArgumentParser, what: str) -> None:
    _add_optional_value(
        command, "--track", "URI", f"{what} the MLflow store at URI (default: sqlite under "
        "$WORKBENCH_DATA_DIR, else .workbench-data/)",
    )  # fmt: skip


def _add_optional_value(
    command: argparse.ArgumentParser, flag: str, metavar: str, help_text: str
) -> None:
    """A flag whose value may be left out ('' then: the default place)."""
    command.add_argument(flag, nargs="?", const="", metavar=metavar, help=help_text)


def _add_runs_command(commands: argparse._SubParsersAction) -> None:
    command = commands.add_parser("runs", help="list the kept runs (the History page's) as a table")
    command.add_argument("--demo", help="only this model's runs (a demo or a model file's name)")
    command.add_argument("--json", action="store_true", help="print JSON records")
    _add_track_option(command, "read")
    command.set_defaults(run=_cmd_runs, track="")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line too (with where to look), still exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _prog() -> str:
    """The name the user typed: the console script, or python -m workbench."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return name if name.startswith("prune-workbench") else "python -m workbench"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=_prog(), description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demos", help="list the built-in demo models").set_defaults(run=_cmd_demos)
    for name, run, help_text in (
        ("layers", _cmd_layers, "list a model's prunable layers"),
        ("evaluate", _cmd_evaluate, "evaluate a pruning plan and print the report as JSON"),
    ):
        command = commands.add_parser(name, help=help_text)
        add_source_options(command)
        command.set_defaults(run=run)
        if name == "layers":
            command.add_argument("--json", action="store_true", help="print JSON records")
        else:
            command.add_argument("--plan", help="a plan JSON file (PruningPlan.to_json)")
            _add_track_option(command, "keep the report as a run in")
    _add_sensitivity_command(commands)
    _add_finetune_command(commands)
    _add_ship_commands(commands)
    _add_runs_command(commands)
    _add_search_command(commands)
    return parser


def _add_sensitivity_command(commands: argparse._SubParsersAction) -> None:
    command = commands.add_parser(
        "sensitivity",
        help="prune each layer alone to each level and print the metrics (or write a CSV)",
    )
    add_source_options(command)
    command.add_argument("--method", default="l1", help="pruning criterion (default l1)")
    command.add_argument(
        "--granularity", default="unstructured", help="granularity (default unstructured)"
    )
    command.add_argument(
        "--levels", help="comma-separated sparsities, e.g. 0,0.5,0.9 (default 0,0.1,...,0.99)"
    )
    command.add_argument("--subset", type=int, help="evaluate on N validation samples (seeded)")
    command.add_argument(
        "--bootstrap", type=int, default=0, help="bootstrap resamples for 95%% intervals (0: none)"
    )
    command.add_argument("--seed", type=int, default=0, help="seed of the subset and bootstrap")
    command.add_argument("--csv", help="write the table to this CSV file instead of printing it")
    _add_ray_option(command, "the layers")
    _add_track_option(command, "keep the scan (scan.csv, with the dense report) as a run in")
    command.set_defaults(run=_cmd_sensitivity)


def _cmd_sensitivity(args: argparse.Namespace) -> int:
    from workbench.analysis.sensitivity import ScanProgress, iter_scan, parse_levels

    levels = parse_levels(args.levels) if args.levels is not None else None
    if args.csv and not Path(args.csv).resolve().parent.is_dir():
        raise ValueError(f"cannot write {args.csv!r}: its folder does not exist")
    bench = _bench(args)
    status = _Status()

    def line(event: ScanProgress) -> str:
        counter = f"[{event.done:>{len(str(event.total))}}/{event.total}]"
        # In a log (no terminal), one line per finished layer instead of a live counter.
        if not status.live and event.done % (event.total // len(bench.layer_names)) == 0:
            print(f"{counter} {event.layer} done", file=sys.stderr, flush=True)
        return f"{counter} {event.layer} at {event.level:.0%}"

    frame = status.drain(
        iter_scan(
            bench,
            levels,
            args.method,
            args.granularity,
            args.subset,
            args.bootstrap,
            args.seed,
            runner=_runner(args),
        ),
        line,
    )
    if args.csv:
        try:
            frame.to_csv(args.csv, index=False)
        except OSError as error:
            raise ValueError(f"cannot write {args.csv!r}: {error.strerror or error}") from None
        print(f"wrote {len(frame)} rows to {args.csv}", file=sys.stderr)
    else:
        print(frame.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if args.track is not None:
        scan_csv = frame.to_csv(index=False)
        _keep(args, bench, bench.evaluate(PruningPlan()), "sensitivity", {"scan.csv": scan_csv})
    return 0


def _add_finetune_command(commands: argparse._SubParsersAction) -> None:
    command = commands.add_parser(
        "finetune",
        help="recover a pruned model's accuracy: fine-tune it with its zeros held (optionally "
        "distilling from the dense model, or pruning gradually) and write the weights",
    )
    add_source_options(command)
    command.add_argument("--plan", required=True, help="a plan JSON file (PruningPlan.to_json)")
    command.add_argument("--epochs", type=int, default=3, help="passes over the training set")
    command.add_argument("--lr", type=float, default=1e-3, help="learning rate (default 1e-3)")
    command.add_argument("--batch-size", type=int, default=64, help="batch size (default 64)")
    command.add_argument(
        "--distill",
        type=float,
        default=0.0,
        help="weight of distillation from the dense model, 0..1 (default 0: labels only)",
    )
    command.add_argument("--temperature", type=float, default=4.0, help="distillation T")
    command.add_argument(
        "--gradual",
        action="store_true",
        help="start from the dense model and prune along an AGP (cubic) schedule",
    )
    command.add_argument("--seed", type=int, default=0, help="seed of the batch order")
    command.add_argument("--out", help="write the recovered weights to this .safetensors file")
    _add_track_option(command, "keep the recovered model's report and history as a run in")
    command.set_defaults(run=_cmd_finetune)


def _cmd_finetune(args: argparse.Namespace) -> int:
    from safetensors.torch import save_file
    from tqdm import tqdm

    from workbench.recover import Schedule, finetune_iter

    plan = _read_plan(args.plan)
    if args.out and not Path(args.out).resolve().parent.is_dir():
        raise ValueError(f"cannot write {args.out!r}: its folder does not exist")
    bench, train = _built(args, need_train=True)
    if train is None:  # a split that did not fit the model (the build warned why)
        raise ValueError(NO_TRAINING_DATA)
    events = finetune_iter(
        bench,
        plan,
        train,
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        distill=args.distill,
        temperature=args.temperature,
        schedule=Schedule.agp() if args.gradual else None,
        seed=args.seed,
    )
    # Every check runs before the first event: a bad setting is its one error line, no bar.
    first = next(events)
    with tqdm(total=None, unit="step", file=sys.stderr, dynamic_ncols=True) as bar:
        for event in itertools.chain([first], events):
            bar.total = int(event.total)
            bar.n = int(event.done)
            bar.set_description(event.message, refresh=False)
            bar.refresh()
            if event.finished:
                run = event.result
    one_shot = bench.evaluate(plan)
    summary = {
        "plan": plan.to_dict(),
        "dense_metrics": one_shot.dense_metrics,
        "one_shot_metrics": one_shot.metrics,
        "recovered_metrics": run.report.metrics,
        "best_step": run.best_step,
        "stopped": run.stopped,
        "seconds": round(run.seconds, 2),
        "notes": run.notes,
    }
    if args.track is not None:
        history = run.history.to_csv(index=False)
        _keep(args, bench, run.report, source="recovery", texts={"history.csv": history},
              trained=run)  # fmt: skip
    if args.out:
        tensors = {k: v.contiguous() for k, v in run.plain_model().state_dict().items()}
        save_file(tensors, args.out, metadata={"plan": plan.to_json(indent=None)})
        summary["out"] = args.out
    print(json.dumps(summary, indent=2, allow_nan=False))
    return 0


def _add_ship_commands(commands: argparse._SubParsersAction) -> None:
    from workbench.ship import EXPORT_FORMATS

    export = commands.add_parser(
        "export", help="write the pruned (compacted where possible) model or the plan to a file"
    )
    add_source_options(export)
    export.add_argument("--plan", help="a plan JSON file (default: the dense model)")
    export.add_argument(
        "--format", choices=list(EXPORT_FORMATS), help="default: from the suffix of --out"
    )
    export.add_argument("--out", required=True, help="the file to write")
    _add_track_option(export, "keep the exported plan's report as a run in")
    export.set_defaults(run=_cmd_export)
    latency = commands.add_parser(
        "latency", help="measure dense, masked and compacted latency (torch.utils.benchmark)"
    )
    add_source_options(latency)
    latency.add_argument("--plan", help="a plan JSON file (default: the dense model)")
    latency.add_argument("--batch-size", type=int, default=1, help="samples per call (default 1)")
    latency.add_argument("--threads", type=int, help="torch threads (default: torch's count)")
    latency.add_argument("--json", action="store_true", help="print JSON records")
    latency.set_defaults(run=_cmd_latency)


def _cmd_export(args: argparse.Namespace) -> int:
    from workbench.ship import export

    plan = _read_plan(args.plan) if args.plan else PruningPlan()
    if not Path(args.out).resolve().parent.is_dir():
        raise ValueError(f"cannot write {args.out!r}: its folder does not exist")
    bench = _bench(args)
    path = export(bench, plan, args.out, args.format)
    if args.track is not None:
        _keep(args, bench, bench.evaluate(plan), source="export", texts={"export.txt": str(path)},
              files={path.name: path})  # fmt: skip
    print(f"wrote {path} ({path.stat().st_size:,} bytes)")
    return 0


def _cmd_latency(args: argparse.Namespace) -> int:
    from workbench.ship import plan_latency

    plan = _read_plan(args.plan) if args.plan else PruningPlan()
    table = plan_latency(_bench(args), plan, args.batch_size, args.threads)
    table["median_ms"], table["iqr_ms"] = table["median_s"] * 1e3, table["iqr_s"] * 1e3
    table = table[["label", "batch", "threads", "median_ms", "iqr_ms", "runs", "speedup"]]
    if args.json:
        print(table.to_json(orient="records", indent=2))
    else:
        print(table.to_string(index=False, float_format="{:.3f}".format))
    return 0


def _one_line(error: BaseException) -> str:
    """The error's message on one line (a message may span several; the exit line must not)."""
    if isinstance(error, OSError) and error.strerror:
        where = f"{error.filename!r}: " if error.filename is not None else ""
        return f"{where}{error.strerror}"
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return "; ".join(lines) or type(error).__name__


def main(argv: list[str] | None = None) -> int:
    """Run one command; a bad input (any workbench error, an unreadable file) exits 2, one line."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    # Every error the core raises on purpose is a ValueError (PlanError, LoadError, ScanError,
    # ...); an OSError is a path the user gave that cannot be read or written. Anything else is a
    # bug and keeps its traceback.
    except (ValueError, OSError) as error:
        print(f"error: {_one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
