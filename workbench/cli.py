"""Command line: python -m workbench {demos,layers,evaluate} ..."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from workbench.evaluate import Workbench
from workbench.models import list_demos, load_demo
from workbench.pruning.plan import PlanError, PruningPlan


def _bench(args: argparse.Namespace) -> Workbench:
    demo = load_demo(args.demo)
    return Workbench(demo.model, demo.val, class_names=demo.meta.class_names)


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
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise PlanError(f"cannot read plan file {path!r}: {error.strerror}") from None
    return PruningPlan.from_json(text)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    plan = _read_plan(args.plan) if args.plan else PruningPlan()
    report = _bench(args).evaluate(plan)
    print(json.dumps(report.to_dict(), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m workbench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demos", help="list the built-in demo models").set_defaults(run=_cmd_demos)
    for name, run, help_text in (
        ("layers", _cmd_layers, "list a model's prunable layers"),
        ("evaluate", _cmd_evaluate, "evaluate a pruning plan and print the report as JSON"),
    ):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("--demo", default="digits-cnn", help="a built-in demo model")
        command.set_defaults(run=run)
        if name == "layers":
            command.add_argument("--json", action="store_true", help="print JSON records")
        else:
            command.add_argument("--plan", help="a plan JSON file (PruningPlan.to_json)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (PlanError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
