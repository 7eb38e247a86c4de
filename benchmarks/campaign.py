"""The reproduction campaign: every family's headline figure run toward the paper's length,
one row after another, within a CPU-hour budget per row (issue 27's table).

    python benchmarks/campaign.py [--only ROW] [--runs DIR]      # run (or carry on)
    python benchmarks/campaign.py --status                       # done / running / left, time

Each row trains with ``vaelab train FAMILY --profile paper ...`` under ``nice``, one thread, one
job at a time, each step a subprocess. A row whose paper length exceeds its budget trains in
chunks (``--resume --epochs N``, extending) until its recorded training time (the per-epoch
``cpu_seconds`` of metrics.jsonl, or ``seconds`` where a line lacks them) reaches the budget; then the test figure is measured once, on the
best weights (the epoch validation chose), with ``vaelab eval ... --split test --json``.

Everything the campaign knows comes from the run directories and from small files it writes
atomically beside them (RUNS/ROW/progress.json after every step, RUNS/ROW/test.json and
RUNS/ROW/result.json when measured), so it survives SIGKILL at any moment: the next start
resumes every run where its last checkpoint left it. ``benchmarks/reproduction_table.py``
turns the results into docs/reproduction.md.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_RUNS = REPO / "runs" / "campaign"
SHARED_DATA = REPO.parent / "shared" / "data"
HOUR = 3600.0
sys.path.insert(0, str(REPO))  # this checkout's vaelab, in this process and (PYTHONPATH) in every step
CHUNK_HOURS = 1.0  # at most this much training per subprocess, so estimates and progress stay fresh


@dataclass(frozen=True)
class Row:
    """One line of the reproduction table: what to run, what it is compared with, how long."""
    id: str
    family: str
    title: str
    train: tuple[str, ...]          # the row's own options after `vaelab train FAMILY --profile P`
    metric: str                     # key of `vaelab eval --json`'s output
    paper: str                      # the paper's figure as printed, with provenance tag
    goal: float                     # reached when the figure (in `unit`) is <= goal
    unit: str                       # "%" (metric is a fraction, shown x100), "nats" or "perplexity"
    protocol: str                   # the paper's protocol and where it is written down
    budget_hours: float             # CPU-hours on one thread (issue 27's table)
    paper_epochs: int               # the paper's length; 0: not in the sources, train until the budget
    eval: tuple[str, ...] = ()      # extra `vaelab eval` options (--nll-samples 5000)
    data: str = "mnist"
    profile: str = "paper"
    prior: tuple[str, ...] | None = None  # `vaelab train-prior RUN` options, for a two-stage row
    earlier: str = ""               # measurements in the docs that are not the campaign's (markdown)
    note: str = ""
    first_chunk: int = 1            # epochs of the first chunk, before seconds per epoch are known

    def figure(self, value: float) -> float:
        return 100.0 * value if self.unit == "%" else value


_SSL = "docs/semi-supervised.md"
ROWS: list[Row] = [  # campaign order: the gap we expect to close per CPU-hour, largest first
    Row("m2-100", "m2", "M2, 100 labels, label seed 0", ("--labels", "100", "--label-seed", "0"),
        "classification_error", "11.97 ± 1.71 % [S]", 11.97, "%",
        "Kingma et al. 2014, Table 1: MNIST test error, 100 class-balanced labels, 50k/10k/10k; official "
        "code dpkingma/nips14-ssl [O], 3000 epochs (paper-tables.md §3)", 4.0, 3000,
        earlier=f"34.91 ± 1.81 % after 10 epochs, seeds 0–2 ([{_SSL}]({_SSL.split('/')[1]}"
                "#error-the-papers-table-on-a-budget-profile))"),
    Row("aae-semi-100", "aae-semi", "aae-semi, 100 labels, label seed 0", ("--labels", "100", "--label-seed", "0"),
        "classification_error", "1.90 ± 0.10 % [M]", 1.90, "%",
        "Makhzani et al. 2015: MNIST test error at 100 labels; the paper's text was not found, figure from "
        "memory (paper-tables.md §5); its length is not in the sources", 4.0, 0,
        earlier="8.71 ± 1.97 % after 7 epochs, seeds 0–2 ([aae.md](aae.md#measured-semi-supervised-100-labels))"),
    Row("m1m2-100", "m1m2", "M1 + M2, 100 labels, label seed 0", ("--labels", "100", "--label-seed", "0"),
        "classification_error", "3.33 ± 0.14 % [S]", 3.33, "%",
        "Kingma et al. 2014, Table 1: M1 (VAE 784-500-500-50) then M2 on its codes, official script "
        "run_2layer_ssl.py [O], 3000 epochs (paper-tables.md §3)", 4.0, 3000,
        earlier=f"6.42 % after 400 epochs, seed 0 ([semi-supervised.md]({_SSL.split('/')[1]}"
                "#error-m1--m2-with-100-labels-400-epochs))",
        note="the budget includes M1's VAE (its --m1-epochs)"),
    Row("aae-cluster-16", "aae-cluster", "aae-cluster, 16 clusters", ("--clusters", "16"),
        "cluster_error_most_confident", "9.55 ± 2.05 % [M]", 9.55, "%",
        "Makhzani et al. 2015: MNIST test error, each cluster named by its most confident training image "
        "(paper-tables.md §5, from memory)", 3.0, 0,
        earlier="33.27 % after 8 epochs, logit batch norm on ([aae.md](aae.md#measured-clustering))"),
    Row("aae-cluster-30", "aae-cluster", "aae-cluster, 30 clusters", ("--clusters", "30"),
        "cluster_error_most_confident", "4.10 ± 1.13 % [M]", 4.10, "%",
        "as the 16-cluster row, 30 clusters (paper-tables.md §5, from memory)", 3.0, 0,
        earlier="28.91 % after 8 epochs, logit batch norm on ([aae.md](aae.md#measured-clustering))"),
    Row("pixelcnn", "pixelcnn", "PixelCNN, binarized MNIST", (), "nll", "81.30 nats [M]", 81.3, "nats",
        "van den Oord et al. 2016 (PixelRNN paper): exact −log p(x) on binarized MNIST test images, quoted "
        "from memory (docs/pixelcnn.md); the profile is vaelab's long setting, not the paper's network", 6.0, 30,
        earlier="87.74 ± 0.21 nats after 2 epochs, `--profile quick` ([pixelcnn.md](pixelcnn.md"
                "#quality-binarized-mnist-test-set))"),
    Row("pixelrnn", "pixelrnn", "Row LSTM, binarized MNIST", (), "nll", "80.54 nats [M]", 80.54, "nats",
        "van den Oord et al. 2016: Row LSTM, exact −log p(x) on binarized MNIST, quoted from memory "
        "(docs/pixelcnn.md#pixel-rnns-row-lstm-pixelrnn); depth and schedule not in the sources", 3.0, 0),
    Row("text-vae-ptb", "text-vae", "text-vae, PTB (Texar's reproduction of Bowman et al.)", (), "nelbo",
        "102.06–102.10 nats [P]", 102.1, "nats",
        "Texar examples/vae_text README: test −ELBO per sentence (recon + KL, one sample: a bound), LSTM 256, "
        "z 32, ≤ 100 epochs (paper-tables.md §12, confirmed)", 6.0, 100, data="ptb",
        earlier="127.30 nats after 1 epoch ([text.md](text.md))"),
    Row("lstm-lm-ptb", "lstm-lm", "LSTM language model, PTB (Bowman et al.'s baseline)", (), "ppl",
        "116 perplexity [M]", 116.0, "perplexity",
        "Bowman et al. 2016: test perplexity of the LSTM LM over words + <eos> (paper-tables.md §12, from memory); "
        "the profile follows Texar's optimiser, 30 epochs", 4.0, 30, data="ptb",
        earlier="253.2 perplexity after 1 epoch ([text.md](text.md))"),
    Row("vae-iwae-t1", "vae", "VAE (IWAE Table 1 architecture)", (), "nll", "86.76 nats [P]", 86.76, "nats",
        "Burda et al. 2016, Table 1: one stochastic layer, k = 1; test L_5000 on dynamically binarized "
        "MNIST, 3280 epochs (paper-tables.md §1, paper text)", 0.0, 3280, eval=("--nll-samples", "5000"),
        earlier="86.50 ± 0.23 nats after 900 epochs, `benchmarks/iwae_vae.py --profile long` "
                "([benchmarks.md](benchmarks.md#quality-the-iwae-papers-vae-on-mnist))",
        note="no campaign budget: the earlier measurement reached the goal; give it hours to confirm it "
             "on the paper profile"),
]


# -- what the run directories say ---------------------------------------------------------
@dataclass
class RunState:
    epochs: int = 0                 # epochs of the run's last (or only) stage
    train_seconds: float = 0.0      # sum of every epoch's CPU seconds (epoch_cost), every stage, every retry
    epoch_seconds: list = field(default_factory=list)  # the last stage's, for the estimate
    best_epoch: int = 0
    stopped_early: bool = False


def _metrics(path: Path) -> list[dict]:
    """metrics.jsonl's lines; a line cut by a kill is skipped."""
    lines = []
    with contextlib.suppress(OSError):
        for text in path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                lines.append(json.loads(text))
    return [line for line in lines if isinstance(line, dict) and "epoch" in line]


def main_stage(run: Path) -> Path:
    """The directory whose epochs `--epochs` counts: a run of stages' last stage, else the run."""
    if (run / "stages.json").exists():
        stages = sorted(p.parent for p in run.glob("*/run.json"))
        if stages:
            return stages[-1]
    return run


def checkpoint_counters(stage: Path) -> dict:
    """The loop counters in the stage's last checkpoint (read from its header, no torch)."""
    for name in ("last.safetensors", "last.prev.safetensors"):
        path = stage / "checkpoints" / name
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            with open(path, "rb") as f:
                n = int.from_bytes(f.read(8), "little")
                header = json.loads(f.read(n))
            return json.loads(header["__metadata__"]["state"])["counters"]
    return {}


def epoch_cost(line: dict) -> float:
    """An epoch's share of the budget: the CPU seconds its process spent (on a shared machine
    a niced run waits for the cores, and waiting costs no budget), or its wall seconds where
    the line predates the trainer recording CPU time."""
    return float(line.get("cpu_seconds", line.get("seconds")) or 0)


def run_state(run: Path) -> RunState:
    st = RunState()
    for path in sorted(run.rglob("metrics.jsonl")) if run.exists() else []:
        st.train_seconds += sum(epoch_cost(line) for line in _metrics(path))
    stage = main_stage(run)
    counters = checkpoint_counters(stage)
    st.epochs = int(counters.get("epoch") or 0)
    st.best_epoch = int(counters.get("best_epoch") or 0)
    st.epoch_seconds = [epoch_cost(line) for line in _metrics(stage / "metrics.jsonl")]
    patience = _recorded_train(stage).get("patience") or 0
    st.stopped_early = bool(patience) and int(counters.get("bad_epochs") or 0) >= patience
    return st


def _recorded_train(stage: Path) -> dict:
    with contextlib.suppress(OSError, ValueError):
        return json.loads((stage / "run.json").read_text()).get("train", {})
    return {}


# -- the row's own files --------------------------------------------------------------------
def row_dir(runs: Path, row: Row) -> Path:
    return runs / row.id


def read_json(path: Path) -> dict | None:
    with contextlib.suppress(OSError, ValueError):
        obj = json.loads(path.read_text())
        return obj if isinstance(obj, dict) else None
    return None


def write_json(path: Path, obj: dict) -> None:
    from vaelab.files import atomic_write_json

    atomic_write_json(path, obj)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- commands ---------------------------------------------------------------------------------
def train_command(row: Row, run: Path) -> list[str]:
    """The command a reader types (the campaign adds --resume --epochs N --threads 1)."""
    return ["vaelab", "train", row.family, "--data", row.data, "--profile", row.profile, *row.train, "--out", str(run)]


def prior_command(row: Row, run: Path) -> list[str]:
    return ["vaelab", "train-prior", str(run), "--profile", row.profile, *(row.prior or ())]


def eval_command(row: Row, run: Path) -> list[str]:
    return ["vaelab", "eval", str(run), "--data", row.data, "--split", "test", *row.eval, "--json"]


def run_step(cmd: list[str], log: Path, stdout: Path | None = None) -> dict:
    """One subprocess under nice, one thread; its wall and CPU seconds and exit status."""
    argv = ["nice", "-n", "10", sys.executable, "-m", "vaelab", *cmd[1:], "--threads", "1"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    before, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as err, open(stdout, "wb") if stdout else contextlib.nullcontext(err) as out:
        rc = subprocess.run(argv, stdout=out, stderr=err, env=env, cwd=REPO).returncode
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"command": " ".join(cmd), "rc": rc, "wall": round(time.monotonic() - t0, 3), "cpu": round(cpu, 3),
            "finished": _now()}


def record_step(rd: Path, step: dict) -> dict:
    """Append a finished step to progress.json (atomically) and return the new record."""
    progress = read_json(rd / "progress.json") or {"steps": []}
    progress["steps"].append(step)
    progress.update(cpu_seconds=round(sum(s["cpu"] for s in progress["steps"]), 3),
                    wall_seconds=round(sum(s["wall"] for s in progress["steps"]), 3), updated=_now())
    st = run_state(rd / "run")
    progress.update(epochs=st.epochs, train_seconds=round(st.train_seconds, 3), best_epoch=st.best_epoch)
    write_json(rd / "progress.json", progress)
    return progress


# -- the budget ----------------------------------------------------------------------------------
def next_target(row: Row, st: RunState) -> int | None:
    """The epoch the next chunk trains to, or None when the row's training is over."""
    paper, budget = row.paper_epochs, row.budget_hours * HOUR
    if st.stopped_early or (paper and st.epochs >= paper) or st.train_seconds >= budget:
        return None
    if not st.epoch_seconds:
        n = row.first_chunk
    else:
        per_epoch = statistics.median(st.epoch_seconds)
        left = budget - st.train_seconds
        if left < per_epoch / 2:  # less than half an epoch left: the budget is spent
            return None
        n = max(1, min(round(left / per_epoch), int(CHUNK_HOURS * HOUR / per_epoch)))
    return min(paper, st.epochs + n) if paper else st.epochs + n


def why_stopped(row: Row, st: RunState) -> str:
    if st.stopped_early:
        return "stopped early (validation)"
    if row.paper_epochs and st.epochs >= row.paper_epochs:
        return "paper's length"
    return "budget"


class StepFailed(Exception):
    pass


def _checked(rd: Path, step: dict) -> dict:
    progress = record_step(rd, step)
    if step["rc"] != 0:
        raise StepFailed(f"`{step['command']}` exited with status {step['rc']}; see {rd / 'log.txt'}")
    return progress


def train_row(row: Row, rd: Path) -> None:
    run = rd / "run"
    while True:
        st = run_state(run)
        target = next_target(row, st)
        if target is None:
            return
        cmd = train_command(row, run) + ["--resume", "--epochs", str(target), "--no-progress"]
        print(f"[{row.id}] training to epoch {target} ({st.train_seconds / HOUR:.2f} of "
              f"{row.budget_hours:g} CPU-hours used)", flush=True)
        _checked(rd, {"step": "train", "target": target, **run_step(cmd, rd / "log.txt")})
        _curves(rd)  # the learning curve so far, for the table while the row trains
        after = run_state(run)
        if after.epochs < target and not after.stopped_early:
            raise StepFailed(f"training stopped at epoch {after.epochs} of {target}; see {rd / 'log.txt'}")


def git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)


def relevant_paths(row: Row) -> list[str]:
    """What could move the row's figure: its model file, the layers, data, training and
    evaluation code, and its profile (the staleness test of the table)."""
    import inspect

    from vaelab.models import model_class

    model = Path(inspect.getsourcefile(model_class(row.family))).resolve().relative_to(REPO)
    return [str(model), "vaelab/nn/", "vaelab/data/", "vaelab/training/", "vaelab/evaluation/",
            f"vaelab/profiles/{row.family}/"]


def _curves(rd: Path) -> dict:
    """``vaelab curves RUN -o RUNS/ROW/curves.png``: validation figures against epoch."""
    return _checked(rd, {"step": "curves", **run_step(["vaelab", "curves", str(rd / "run"), "-o",
                                                       str(rd / "curves.png")], rd / "log.txt")})


def measure_row(row: Row, rd: Path) -> dict:
    """The test figure at the best weights, once; then result.json with the commit."""
    run = rd / "run"
    if row.prior is not None:
        _checked(rd, {"step": "prior", **run_step(prior_command(row, run) + ["--resume", "--no-progress"],
                                                  rd / "log.txt")})
    _checked(rd, {"step": "eval", **run_step(eval_command(row, run) + ["--no-progress"], rd / "log.txt",
                                             stdout=rd / "test.out")})
    test = read_json(rd / "test.out")
    if test is None or not isinstance(test.get(row.metric), (int, float)):
        raise StepFailed(f"`vaelab eval` gave no {row.metric} (see {rd / 'test.out'}); fix the row's metric")
    write_json(rd / "test.json", test)
    if not (rd / "curves.png").exists():
        _curves(rd)
    progress = read_json(rd / "progress.json") or {}
    st, paths = run_state(run), relevant_paths(row)
    value = float(test[row.metric])
    result = {
        "row": row.id, "family": row.family, "metric": row.metric, "value": value, "figure": row.figure(value),
        "unit": row.unit, "split": test.get("split", "test"), "n": test.get("n"), "goal": row.goal,
        "reached": row.figure(value) <= row.goal, "epochs": st.epochs, "best_epoch": st.best_epoch,
        "paper_epochs": row.paper_epochs, "stopped": why_stopped(row, st),
        "train_seconds": round(st.train_seconds, 3), "wall_seconds": progress["wall_seconds"],
        "cpu_seconds": progress["cpu_seconds"], "budget_hours": row.budget_hours,
        "profile": _recorded_train(main_stage(run)).get("profile"),
        "command": " ".join(train_command(row, Path("RUN"))), "eval_command": " ".join(eval_command(row, Path("RUN"))),
        "commit": git("rev-parse", "HEAD").stdout.strip(),
        "dirty": bool(git("status", "--porcelain", "--", *paths).stdout.strip()), "paths": paths,
        "curves": "curves.png", "measured": _now()}
    write_json(rd / "result.json", result)
    return result


def run_row(row: Row, runs: Path) -> dict | None:
    rd = row_dir(runs, row)
    done = read_json(rd / "result.json")
    if done is not None:
        return done
    if row.budget_hours <= 0:
        print(f"[{row.id}] no budget: not run ({row.note or 'give it hours to run it'})", flush=True)
        return None
    write_json(runs / "current.json", {"row": row.id, "pid": os.getpid(), "since": _now()})
    train_row(row, rd)
    result = measure_row(row, rd)
    print(f"[{row.id}] {result['metric']} {result['figure']:.2f} {row.unit} on test after {result['epochs']} "
          f"epochs ({result['stopped']}); goal <= {row.goal}: {'reached' if result['reached'] else 'not reached'}",
          flush=True)
    return result


# -- the campaign's lock and status --------------------------------------------------------------
@contextlib.contextmanager
def campaign_lock(runs: Path):
    """One campaign at a time per runs directory; the lock dies with the process (SIGKILL too)."""
    import fcntl

    runs.mkdir(parents=True, exist_ok=True)
    fd = os.open(runs / ".campaign.lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise SystemExit(f"error: a campaign is already running on {runs}; see --status") from None
        yield
    finally:
        os.close(fd)


def campaign_running(runs: Path) -> bool:
    import fcntl

    try:
        fd = os.open(runs / ".campaign.lock", os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def row_status(row: Row, runs: Path, running_row: str | None) -> dict:
    rd = row_dir(runs, row)
    st = run_state(rd / "run")
    result = read_json(rd / "result.json")
    paper = row.paper_epochs
    state = "done" if result else "running" if running_row == row.id else "left" if row.budget_hours > 0 \
        else "no budget"
    per_epoch = statistics.median(st.epoch_seconds) if st.epoch_seconds else None
    budget = row.budget_hours * HOUR
    if result or row.budget_hours <= 0:
        remaining = 0.0
    else:
        remaining = max(0.0, budget - st.train_seconds)
        if per_epoch and paper:
            remaining = min(remaining, per_epoch * max(0, paper - st.epochs))
    return {"row": row.id, "state": state, "epochs": st.epochs, "paper_epochs": paper,
            "used_hours": st.train_seconds / HOUR, "budget_hours": row.budget_hours,
            "seconds_per_epoch": per_epoch, "remaining_hours": remaining / HOUR,
            "figure": result and result["figure"]}


def status_lines(rows: list[Row], runs: Path) -> list[str]:
    current = read_json(runs / "current.json") if campaign_running(runs) else None
    running_row = current and current.get("row")
    lines, left = [], 0.0
    for row in rows:
        s = row_status(row, runs, running_row)
        left += s["remaining_hours"]
        pace = f", {s['seconds_per_epoch']:.1f} s/epoch" if s["seconds_per_epoch"] else ""
        figure = f", {s['figure']:.2f} {row.unit}" if s["figure"] is not None else ""
        budget = f"{s['budget_hours']:g}" if row.budget_hours > 0 else "0"
        lines.append(f"{row.id:<16} {s['state']:<9} epochs {s['epochs']}/{s['paper_epochs'] or '?'}  "
                     f"time {s['used_hours']:.2f} / {budget} CPU-h{pace}{figure}  "
                     f"~{s['remaining_hours']:.2f} h left")
    lines.append(f"campaign: {'running' if running_row else 'not running'}; about {left:.1f} CPU-hours left")
    return lines


def main(argv: list[str] | None = None, rows: list[Row] | None = None) -> int:
    rows = ROWS if rows is None else rows
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", action="append", metavar="ROW", help=f"run only this row (repeatable): "
                   f"{', '.join(r.id for r in rows)}")
    p.add_argument("--runs", default=str(DEFAULT_RUNS), help="where the rows' runs and results live "
                   "(default: runs/campaign)")
    p.add_argument("--status", action="store_true", help="print each row's state and time, run nothing")
    p.add_argument("--data-dir", default=os.environ.get("VAELAB_DATA_DIR") or
                   (str(SHARED_DATA) if SHARED_DATA.exists() else None),
                   help="dataset directory, passed to every step as VAELAB_DATA_DIR "
                        "(default: $VAELAB_DATA_DIR, else ../shared/data)")
    args = p.parse_args(argv)
    if args.data_dir:
        os.environ["VAELAB_DATA_DIR"] = args.data_dir
    runs = Path(args.runs).resolve()
    unknown = sorted(set(args.only or ()) - {r.id for r in rows})
    if unknown:
        print(f"error: unknown row {unknown[0]}; the rows are {', '.join(r.id for r in rows)}", file=sys.stderr)
        return 2
    chosen = [r for r in rows if not args.only or r.id in args.only]
    if args.status:
        print("\n".join(status_lines(chosen, runs)))
        return 0
    failed = 0
    with campaign_lock(runs):
        for row in chosen:  # a failed row is reported and left for the next start; the others go on
            try:
                run_row(row, runs)
            except StepFailed as exc:
                print(f"error: [{row.id}] {exc}", file=sys.stderr)
                failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
