"""Write docs/reproduction.md from the campaign's saved results, never by hand.

    python benchmarks/reproduction_table.py [--runs runs/campaign] [--out docs/reproduction.md]

Reads only what ``benchmarks/campaign.py`` saved per row (RUNS/ROW/result.json once measured,
RUNS/ROW/progress.json and the run directory's metrics and checkpoint while it trains,
RUNS/ROW/curves.png) and the rows' declarations. A
figure measured at a commit before a change to the files that could move it (the paths the
result recorded: the family's model file, vaelab/training/, vaelab/evaluation/, its profile, ...)
is marked stale until the row is run again.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import campaign  # noqa: E402  (the rows as data)

REPO = campaign.REPO
IMAGES = "images/reproduction"  # relative to docs/


def stale(result: dict, repo: Path = REPO) -> str:
    """Why the figure may no longer hold ('' if it does): a later commit changed a recorded path."""
    commit, paths = result.get("commit"), result.get("paths") or []
    if not commit:
        return "no commit recorded"
    known = subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=repo, capture_output=True)
    if known.returncode != 0:
        return f"commit {commit[:7]} is not in this repository"
    diff = subprocess.run(["git", "diff", "--quiet", commit, "HEAD", "--", *paths], cwd=repo, capture_output=True)
    if diff.returncode == 1:
        changed = subprocess.run(["git", "diff", "--name-only", commit, "HEAD", "--", *paths], cwd=repo,
                                 capture_output=True, text=True).stdout.split()
        return f"changed since: {', '.join(changed[:3])}{' …' if len(changed) > 3 else ''}"
    return "measured with uncommitted changes" if result.get("dirty") else ""


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h"


def ours(row: campaign.Row, result: dict | None, live: campaign.RunState, progress: dict | None,
         why_stale: str) -> str:
    """The measured figure, or while the row trains what its run directory (or, between steps,
    its progress file) says now."""
    if result is None:
        progress = progress or {}
        epochs = max(live.epochs, int(progress.get("epochs") or 0))
        if not epochs:
            return "not run yet"
        trained = max(live.train_seconds, float(progress.get("train_seconds") or 0))
        best = live.best_epoch or progress.get("best_epoch")
        return (f"in progress ({epochs} epochs, {hours(trained)} of {row.budget_hours:g} CPU-hours trained"
                + (f"; best so far: epoch {best})" if best else ")"))
    mark = "reached" if result["reached"] else "not reached"
    text = f"**{result['figure']:.2f} {row.unit}** ({result['split']}, n = {result.get('n')}; {mark})"
    return f"{text} **stale** ({why_stale})" if why_stale else text


def epochs(row: campaign.Row, result: dict | None) -> str:
    if result is None:
        return f"– / {row.paper_epochs or 'not in the sources'}"
    return (f"{result['epochs']} / {result['paper_epochs'] or 'not in the sources'} (best {result['best_epoch']}; "
            f"{result['stopped']})")


def curve_link(row: campaign.Row, runs: Path, docs: Path, result: dict | None) -> str:
    """The row's learning curve (so far, while it trains), copied next to the page; '–' before any."""
    src = runs / row.id / "curves.png"
    if not src.exists():
        return "–"
    dest = docs / IMAGES / f"{row.id}.png"
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    return f"[curve]({IMAGES}/{row.id}.png)" + ("" if result else " (so far)")


def table_line(row: campaign.Row, runs: Path, docs: Path, repo: Path) -> str:
    rd = runs / row.id
    result, progress = campaign.read_json(rd / "result.json"), campaign.read_json(rd / "progress.json")
    live = campaign.run_state(rd / "run")
    why = stale(result, repo) if result else ""
    times = (f"{hours(result['wall_seconds'])} / {hours(result['cpu_seconds'])}" if result else "–")
    commit = f"`{result['commit'][:7]}`" if result else "–"
    profile = f"`--profile {result['profile'] if result else row.profile}`"
    cells = [row.title, row.paper, f"≤ {row.goal:g} {row.unit}", ours(row, result, live, progress, why),
             epochs(row, result), times, profile, commit, curve_link(row, runs, docs, result), row.earlier or "–"]
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def details(row: campaign.Row, runs: Path) -> list[str]:
    run = f"runs/campaign/{row.id}/run"
    result = campaign.read_json(runs / row.id / "result.json")
    lines = [f"### {row.title} (`{row.id}`)", "", f"- Paper: {row.paper}. {row.protocol}.",
             f"- Command: `{' '.join(campaign.train_command(row, Path(run)))}`; test figure: "
             f"`{' '.join(campaign.eval_command(row, Path(run)))}` (`{row.metric}`).",
             f"- Budget: {row.budget_hours:g} CPU-hours on one thread" + (f"; {row.note}." if row.note else ".")]
    if result and result["stopped"] == "budget" and result["paper_epochs"] > result["epochs"]:
        lines.append(f"- The budget ended the run at epoch {result['epochs']} of {result['paper_epochs']}; to "
                     f"finish it: `{' '.join(campaign.train_command(row, Path(run)))} --resume --epochs "
                     f"{result['paper_epochs']} --threads 1`, then the test command above.")
    return lines + [""]


def footer(rows: list[campaign.Row], runs: Path) -> list[str]:
    used = left = 0.0
    for row in rows:
        rd = runs / row.id
        record = campaign.read_json(rd / "result.json") or campaign.read_json(rd / "progress.json") or {}
        trained = max(record.get("train_seconds", 0.0), campaign.run_state(rd / "run").train_seconds)
        used += max(record.get("cpu_seconds", 0.0), trained)
        if "figure" not in record and row.budget_hours > 0:
            left += max(0.0, row.budget_hours * 3600 - trained)
    return ["## CPU time", "",
            f"The campaign has used **{used / 3600:.2f} CPU-hours** (every step's CPU time, or its recorded "
            f"training seconds where a step was killed); the rows not yet measured have at most "
            f"**{left / 3600:.2f} CPU-hours** of budget left (one thread each, one row at a time).", ""]


def render(rows: list[campaign.Row], runs: Path, docs: Path, repo: Path = REPO) -> str:
    head = ["# Reproduction table", "",
            "Every family's headline figure beside its paper's, run toward the paper's length under a CPU-hour "
            "budget (issue 27). **Generated** by `python benchmarks/reproduction_table.py` from the results "
            "that `python benchmarks/campaign.py` saved; do not edit by hand. The test figure is measured once, "
            "on the weights of the epoch validation chose. A figure measured at a commit before a change to the "
            "files that could move it (the family's model file, `vaelab/nn/`, `vaelab/data/`, "
            "`vaelab/training/`, `vaelab/evaluation/`, its profile) is marked **stale**.", "",
            "Run or carry on the campaign (one row at a time, `nice`, one thread; safe to kill at any moment): "
            "`nice python benchmarks/campaign.py [--only ROW]`; see where it stands: "
            "`python benchmarks/campaign.py --status`. Provenance tags: [P] paper text, [O] official code, "
            "[S] secondary quote, [M] from memory (../shared/reference/paper-tables.md).", "",
            "| row | paper | goal | ours (campaign) | epochs (ours / paper's) | wall / CPU | profile | commit "
            "| curve | earlier measurements (not from the campaign) |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    body = [table_line(row, runs, docs, repo) for row in rows]
    more = ["", "## Rows: protocol, command, budget", ""] + [line for row in rows for line in details(row, runs)]
    return "\n".join(head + body + more + footer(rows, runs))


def write(rows: list[campaign.Row], runs: Path, out: Path, repo: Path = REPO) -> None:
    from vaelab.files import atomic_write_bytes

    atomic_write_bytes(out, render(rows, runs, out.parent, repo).encode())


def main(argv: list[str] | None = None, rows: list[campaign.Row] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", default=str(campaign.DEFAULT_RUNS), help="the campaign's runs (default: runs/campaign)")
    p.add_argument("--out", default=str(REPO / "docs" / "reproduction.md"), help="page to write")
    args = p.parse_args(argv)
    write(campaign.ROWS if rows is None else rows, Path(args.runs), Path(args.out))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
