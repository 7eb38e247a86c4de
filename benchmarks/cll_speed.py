"""Time the importance-sampled CLL of the hidden quadrants (k = 100) over the 10,000 MNIST test images.

Model: a ``sohn-cvae`` at Pyro's size (z = 200, 500-500 ReLU networks) for one quadrant
setting, loaded from ``--run`` or freshly built (the cost does not depend on the weights:
every sample runs the same networks). The estimate over the target pixels only is what
``vaelab eval RUN --nll-samples 100`` and ``vaelab compare completion`` compute.

    python benchmarks/cll_speed.py --threads 1
"""
from __future__ import annotations

import argparse
import json
import time

import torch

import vaelab
from vaelab.evaluation.conditional import conditional_log_likelihood
from vaelab.threads import set_threads

from common import add_common


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common(parser)
    parser.add_argument("--run", help="a trained sohn-cvae / sohn-gsnn / sohn-hybrid run (default: a fresh build)")
    parser.add_argument("--quadrants", type=int, default=2, help="quadrants given when no --run (default: 2)")
    parser.add_argument("-k", type=int, default=100, help="importance samples (default: 100)")
    parser.add_argument("--limit", type=int, default=0, help="first N test images (default: all 10,000)")
    args = parser.parse_args()
    set_threads(args.threads)
    torch.manual_seed(0)
    model = vaelab.load(args.run) if args.run else vaelab.build("sohn-cvae", quadrants=args.quadrants)
    model = model.to(args.device).eval()
    test = vaelab.load_dataset("mnist", "test", data_dir=args.data_dir)
    rows = model.as_completion(test.batch() if not args.limit else test.batch()[: args.limit])
    t = time.perf_counter()
    log_p = conditional_log_likelihood(model, rows, args.k)
    seconds = time.perf_counter() - t
    print(json.dumps({"n": len(rows), "k": args.k, "quadrants": model.config.quadrants,
                      "target_cnll": float(-log_p.mean()), "seconds": round(seconds, 1),
                      "threads": torch.get_num_threads(), "device": str(args.device)}))


if __name__ == "__main__":
    main()
