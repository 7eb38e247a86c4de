"""Long fuzzing of every parser of user files: many fresh random examples on demand.

    python benchmarks/fuzz_long.py                      # 5000 random examples per parser
    python benchmarks/fuzz_long.py --examples 500 --seed 7

Runs ``tests/test_fuzz.py`` (the same strategies and checks as the suite) with random
instead of derandomized examples. The suite itself stays derandomized and quick; this
explores new inputs. Prints the seed: a failure reproduces with the same ``--seed``, and
hypothesis prints the failing example. Exit status 0 when every parser held.
"""
from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    parser.add_argument("--examples", type=int, default=5000, help="random examples per parser (default 5000)")
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed (default: a random one, printed)")
    parser.add_argument("-k", dest="select", default=None, help="only the fuzz tests whose names match (pytest -k)")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    env = dict(os.environ, VAELAB_FUZZ_RANDOM="1", VAELAB_FUZZ_EXAMPLES=str(args.examples))
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(REPO / "tests" / "test_fuzz.py"),
               f"--hypothesis-seed={seed}"] + (["-k", args.select] if args.select else [])
    print(f"fuzzing with {args.examples} random examples per parser, seed {seed}", flush=True)
    start = time.perf_counter()
    code = subprocess.call(command, cwd=REPO, env=env)
    print(f"{'all parsers held' if code == 0 else 'FINDINGS (see above)'} in {time.perf_counter() - start:.0f} s; "
          f"reproduce with --examples {args.examples} --seed {seed}")
    return code


if __name__ == "__main__":
    sys.exit(main())
