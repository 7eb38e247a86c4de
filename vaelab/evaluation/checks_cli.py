"""The shared command line of the ``python -m vaelab.evaluation.*_checks RUN --data SPEC`` checks:
load the run, the real training images and the split to check (``--split val``, the default: the
validation images the run held out, which choose settings; ``--split test``: the run's own test
split, read once for a final table), compute, print JSON naming the split."""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

import torch

from ..errors import VaelabError


def checks_main(argv: list[str] | None, prog: str, description: str, run_help: str,
                add_options: Callable[[argparse.ArgumentParser], None], compute: Callable,
                require: Callable | None = None) -> int:
    """Parse ``RUN --data SPEC [--data-dir DIR] [--split val|test]`` plus the check's own options,
    then print ``compute(model, train, checked, args)`` as JSON with ``split``; a bad input is one
    ``error:`` line, exit 2. ``train`` (the judge's images) is the whole training split, the
    validation images included: the digit classifier judges, it does not choose. ``require``
    refuses a model of the wrong kind before any split is rebuilt."""
    from ..io import load
    from ..training import run_split
    from ..training.run import validation_parts

    p = argparse.ArgumentParser(prog=prog, allow_abbrev=False, description=description)
    p.add_argument("run", help=run_help)
    p.add_argument("--data", required=True, metavar="SPEC")
    p.add_argument("--data-dir", default=None, metavar="DIR")
    p.add_argument("--split", default="val", choices=("val", "test"),
                   help="images checked: val (default; the run's held-out validation images, for choosing "
                        "settings) or test (the run's test split, read once for the final figures)")
    add_options(p)
    args = p.parse_args(argv)
    try:
        torch.set_num_threads(1)
        model = load(args.run)
        if require is not None:
            require(model)
        train = run_split(args.run, args.data, "train", data_dir=args.data_dir)  # without a carved test part
        # what a check fits on its own (class_in_z's probe) must not include the checked images
        if args.split == "val":
            args.fit_images, checked = validation_parts(args.run, args.data, args.data_dir)
        else:
            args.fit_images, checked = train, run_split(args.run, args.data, "test", data_dir=args.data_dir)
        result = compute(model, train, checked, args)
    except VaelabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"run": str(args.run), "split": args.split, "n_checked": len(checked), **result}, indent=1))
    return 0
