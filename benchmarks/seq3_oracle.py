"""How much of a sentence seq3's reconstructor can read back from a middle sequence chosen for it.

The secret-code goal asks the reconstructor for ≥ 50 % token accuracy (docs/text.md). This
replaces the compressor by an oracle and trains the rest exactly as ``vaelab compare
secret-code`` trains a seq3 (same sizes, word dropout, batches, sentences), so that the
reconstructor's reading is measured apart from what the compressor learns to write:

- ``content``: the input's rarest words (highest IDF over the training sentences), as many as
  the middle sequence holds, kept in the sentence's order: an extractive summary of its content;
- ``prefix``: the input's first words;
- ``every-other``: every ``1/ratio``-th word.

Each is trained on the first ``--sentences`` PTB training sentences and measured on the first
``--eval-size`` validation sentences (token accuracy as ``compare secret-code`` reports it).
With ``--lm-run``, the embedding starts from the language model's (``--init-from-lm``) and the
oracle's middle sequences are judged by that language model as ``compare secret-code`` judges
them (perplexity against real sentences of the same lengths, ``lm_accuracy`` beside). A model
already trained in ``--out`` is measured again, not retrained.

    python benchmarks/seq3_oracle.py --out runs/seq3-oracle --lm-run runs/ptb-lm --threads 1
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vaelab.compare.secret_code import secret_code_measures  # noqa: E402
from vaelab.data import load_dataset  # noqa: E402
from vaelab.io import load  # noqa: E402
from vaelab.models.registry import register  # noqa: E402
from vaelab.models.seq3 import Seq3  # noqa: E402
from vaelab.nn.text import lengths_of, trimmed  # noqa: E402
from vaelab.training import train  # noqa: E402

ORACLES = ("content", "prefix", "every-other")


def oracle_positions(kind: str, idf: torch.Tensor, words: torch.Tensor, m: int) -> list[int]:
    """The positions (in order) of the ``m`` words of ``words`` that the oracle writes."""
    n = len(words)
    if kind == "prefix":
        return list(range(m))
    if kind == "every-other":
        return sorted({min(n - 1, math.floor(i * n / m)) for i in range(m)})
    order = sorted(range(n), key=lambda i: (-float(idf[words[i]]), i))  # rarest first, earlier on ties
    return sorted(order[:m])


def oracle_model(kind: str) -> type:
    @register(f"seq3-oracle-{kind}")
    class Oracle(Seq3):
        """seq3 whose middle sequence is written by the ``kind`` oracle, not the compressor."""

        def compress(self, batch, hard=None):
            lengths = lengths_of(batch)
            x = trimmed(batch.x, lengths)
            m = self.middle_lengths(lengths)
            ids = torch.zeros(len(x), int(m.max()), dtype=torch.int64, device=x.device)
            for i, (row, n, k) in enumerate(zip(x, lengths.tolist(), m.tolist())):
                words = row[:n - 1]
                picked = oracle_positions(kind, self.idf, words, k)
                ids[i, :len(picked)] = words[picked]
            onehots = F.one_hot(ids, len(self.idf)).float()
            return onehots, onehots.clamp(min=1e-9).log(), m

        def lm_prior(self, onehots, logq, m):
            return torch.zeros(len(onehots), device=onehots.device)

    return Oracle


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--oracles", default=",".join(ORACLES))
    p.add_argument("--lm-run", default="")
    p.add_argument("--ratio", type=float, default=0.5)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--sentences", type=int, default=6000)
    p.add_argument("--eval-size", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--embedding", type=int, default=64)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--word-keep", type=float, default=0.5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data-dir", default=None)
    args = p.parse_args(argv)
    kinds = args.oracles.split(",")
    unknown = sorted(set(kinds) - set(ORACLES))
    if unknown:
        p.error(f"--oracles: unknown {', '.join(unknown)}; choose from {', '.join(ORACLES)}")
    data = load_dataset("ptb", "train", data_dir=args.data_dir).subset(slice(0, args.sentences))
    held = load_dataset("ptb", "val", data_dir=args.data_dir).subset(slice(0, args.eval_size)).batch()
    net = {"embedding_dim": args.embedding, "hidden_dim": args.hidden, "ratio": args.ratio,
           "word_keep": args.word_keep, "topic_weight": 0.0, "lm_weight": 0.0}
    lm = None
    if args.lm_run:
        net.update(lm_run=args.lm_run, init_from_lm=True)
        lm = load(args.lm_run)
    pool = load_dataset("ptb", "train", data_dir=args.data_dir).batch()
    config = {"epochs": args.epochs, "batch_size": args.batch_size, "seed": 0, "threads": args.threads, "val_size": 0}
    rows = []
    for kind in kinds:
        name = oracle_model(kind).name
        t0 = time.perf_counter()
        out = Path(args.out) / kind
        if not (out / "model.safetensors").exists():
            train(name, data, out, model_config=net, config=config, progress=False)
        model = load(out)
        model.eval()
        if lm is not None:
            measured = secret_code_measures(model, lm, held, pool)
            measured = {k: measured[k] for k in ("middle_ppl", "real_ppl", "ppl_ratio", "copied", "token_accuracy",
                                                 "lm_accuracy", "recon")}
        else:
            with torch.no_grad():
                measured = {"token_accuracy": float(model.token_accuracy(held).mean()),
                            "recon": float(model.reconstruction_nll(held, *model.compress(held)[::2]).mean())}
        rows.append({"oracle": kind, "ratio": args.ratio, **{k: round(v, 4) for k, v in measured.items()},
                     "seconds": round(time.perf_counter() - t0, 1)})
        print(json.dumps(rows[-1]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
