"""The shared command line of the ``python -m vaelab.evaluation.*_checks RUN --data SPEC`` checks:
load the run, the real training images and the run's own test split, compute, print JSON."""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

import torch

from ..errors import VaelabError


def checks_main(argv: list[str] | None, prog: str, description: str, run_help: str,
                add_options: Callable[[argparse.ArgumentParser], None], compute: Callable) -> int:
    """Parse ``RUN --data SPEC [--data-dir DIR]`` plus the check's own options, then print
    ``compute(model, train, test, args)`` as JSON; a bad input is one ``error:`` line, exit 2."""
    from ..data import load_dataset
    from ..io import load
    from ..training import run_split

    p = argparse.ArgumentParser(prog=prog, allow_abbrev=False, description=description)
    p.add_argument("run", help=run_help)
    p.add_argument("--data", required=True, metavar="SPEC")
    p.add_argument("--data-dir", default=None, metavar="DIR")
    add_options(p)
    args = p.parse_args(argv)
    try:
        torch.set_num_threads(1)
        model = load(args.run)
        train = load_dataset(args.data, "train", data_dir=args.data_dir)  # all real training images
        test = run_split(args.run, args.data, "test", data_dir=args.data_dir)
        result = compute(model, train, test, args)
    except VaelabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"run": str(args.run), **result}, indent=1))
    return 0
