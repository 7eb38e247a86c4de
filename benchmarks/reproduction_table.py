"""Write docs/reproduction.md from the campaign's saved results, never by hand.

    python benchmarks/reproduction_table.py [--runs runs/campaign] [--out docs/reproduction.md]

Reads only what ``benchmarks/campaign.py`` saved per row (RUNS/ROW/result.json once measured,
or its committed copy benchmarks/results/ROW.json where the run directory is gone;
RUNS/ROW/progress.json and the run directory's metrics and checkpoint while it trains,
RUNS/ROW/curves.png) and the rows' declarations. A
figure measured at a commit before a change to the files that could move it (the paths the
result recorded: the family's model file, vaelab/training/, vaelab/evaluation/, its profile, ...)
is marked stale until the row is run again or ``campaign.py --confirm ROW`` confirms it at a later
commit (then changes count from that commit).
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import campaign  # noqa: E402  (the rows as data)

REPO = campaign.REPO
IMAGES = "images/reproduction"  # relative to docs/
GROUPS = {  # Row.group: the table's sections, in this order
    "campaign": ("The campaign's long rows (issue 27's table)",
                 "Each row trains toward the paper's length within its CPU-hour budget; the test figure at the "
                 "epoch validation chose."),
    "headline": ("Every other family's headline",
                 "The figure each family's docs page claims, run by the campaign with the documented command: "
                 "`vaelab train` then `vaelab eval` (or a check), or a `vaelab compare` whose results.json row "
                 "holds the figure (with `--split test` where the comparison has a split). A goal written as "
                 "\"its `column`\" is another figure of the same comparison row (PCA's MSE beside the "
                 "autoencoder's); \"reported\" rows have no goal in the docs."),
}


stale = campaign.stale  # the table and `campaign.py --confirm` judge staleness alike


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h"


def ours(row: campaign.Row, result: dict | None, live: campaign.RunState, progress: dict | None,
         why_stale: str, again: bool = False) -> str:
    """The measured figure, or while the row trains what its run directory (or, between steps,
    its progress file) says now."""
    if row.reason:
        return f"no measurable figure: {row.reason}"
    if result is None:
        progress = progress or {}
        epochs = max(live.epochs, int(progress.get("epochs") or 0))
        if not row.trains and progress.get("steps"):
            return "started: the comparison ran, no figure read yet (see the row's log.txt)"
        if not row.trains or not epochs:
            waits = campaign.waits_for(row)
            return f"not run yet (waits for row `{waits[0]}`)" if waits else "not run yet"
        trained = max(live.train_seconds, float(progress.get("train_seconds") or 0))
        best = live.best_epoch or progress.get("best_epoch")
        return (f"in progress ({epochs} epochs, {hours(trained)} of {row.budget_hours:g} CPU-hours trained"
                + (f"; best so far: epoch {best})" if best else ")"))
    mark = {True: "reached", False: "not reached", None: "reported"}[result["reached"]]
    against = (f"; goal {result['goal']:.4g}" if isinstance(row.goal, str) and result.get("goal") is not None else "")
    text = (f"**{campaign.shown(row, result['figure'], result.get('of'))}** ({result['split']}, n = {result.get('n')}"
            f"{against}; {mark})")
    if again:
        epochs = max(live.epochs, int((progress or {}).get("epochs") or 0))
        text += (f"; being measured again ({epochs} epoch{'s' if epochs != 1 else ''} so far)" if row.trains
                 else "; being measured again")
    return f"{text} **stale** ({why_stale})" if why_stale else text


def epochs(row: campaign.Row, result: dict | None) -> str:
    if not row.trains:
        run = f"{result['epochs']} per model" if result and result.get("epochs") else "its own"
        return f"{run} / {row.paper_epochs or 'not in the sources'} (comparison)"
    if result is None:
        return f"– / {row.paper_epochs or 'not in the sources'}"
    return (f"{result['epochs']} / {result['paper_epochs'] or 'not in the sources'} (best {result['best_epoch']}; "
            f"{result['stopped']})")


def curve_link(row: campaign.Row, runs: Path, docs: Path, result: dict | None, again: bool = False) -> str:
    """The row's learning curve (so far, while it trains), copied next to the page; '–' before any."""
    src, dest = runs / row.id / "curves.png", docs / IMAGES / f"{row.id}.png"
    if not src.exists() or again:  # a measured row keeps the curve copied when it was measured
        return f"[curve]({IMAGES}/{row.id}.png)" if result and result.get("curves") and dest.exists() else "–"
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    return f"[curve]({IMAGES}/{row.id}.png)" + ("" if result else " (so far)")


def training_wall(run: Path) -> float:
    """Wall seconds of a run's recorded epochs: steps killed at a session's end count no time of
    their own in progress.json, but their epochs are in metrics.jsonl."""
    paths = sorted(run.rglob("metrics.jsonl")) if run.exists() else []
    return sum(float(line.get("seconds") or 0) for path in paths for line in campaign._metrics(path))


def table_line(row: campaign.Row, runs: Path, docs: Path, repo: Path) -> str:
    rd = runs / row.id
    (result, again), progress = campaign.shown_result(runs, row.id), campaign.read_json(rd / "progress.json")
    live = campaign.run_state(rd / "run")
    why = stale(result, repo, campaign.relevant_paths(row)) if result else ""
    times = (f"{hours(max(result['wall_seconds'], training_wall(rd / 'run')))} / "
             f"{hours(max(result['cpu_seconds'], result.get('train_seconds', 0.0)))}" if result else "–")
    commit = f"`{result['commit'][:7]}`" if result else "–"
    confirmed = (result or {}).get("confirmed")
    if isinstance(confirmed, dict) and confirmed.get("commit"):
        commit += f" (confirmed at `{confirmed['commit'][:7]}`)"
    if not row.trains:
        profile = "none (a comparison's own settings)"
    elif row.profile:
        profile = f"`--profile {result['profile'] if result and result.get('profile') else row.profile}`"
    else:
        profile = "family defaults + the row's options"
    families = ", ".join(f"`{f}`" for f in row.families)
    cells = [row.title, families, row.paper, campaign.goal_text(row), ours(row, result, live, progress, why, again),
             epochs(row, result), times, profile, commit, curve_link(row, runs, docs, result, again), row.earlier or "–"]
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def details(row: campaign.Row, runs: Path) -> list[str]:
    shown_runs = Path("runs/campaign")
    run = f"{shown_runs}/{row.id}/run"
    result, _ = campaign.shown_result(runs, row.id)
    lines = [f"### {row.title} (`{row.id}`)", "", f"- Paper: {row.paper}. {row.protocol}."]
    if row.reason:
        return lines + [f"- Not measured: {row.reason}.", ""]
    test = " ".join(campaign.test_command(row, shown_runs))
    if row.compare:
        source = (f"`{row.metric}` of the row with {campaign._pick_text(row)} in "
                  f"`{campaign.compare_dir(shown_runs, row)}/results.json`")
    else:
        source = f"`{row.metric}`" + (" (the goals met, counted)" if row.check else "")
    train = f"`{' '.join(campaign.train_command(row, Path(run)))}`; " if row.trains else ""
    waits = campaign.waits_for(row)
    budget = (f"{row.budget_hours:g} CPU-hours on one thread" if row.budget_hours > 0 or row.trains else
              "none of its own: it reads a comparison that an earlier row runs")
    lines += [f"- Command: {train}test figure: `{test}`, {source}." + (
                  f" Runs after row `{waits[0]}`, whose run it reads." if waits else ""),
              f"- Budget: {budget}" + (f"; {row.note}." if row.note else ".")]
    if result and not (runs / row.id).exists():
        lines.append(f"- Kept in `benchmarks/results/{row.id}.json`"
                     + (f" ({result['recovered']})" if result.get("recovered") else "")
                     + f". No run directory here: after a change it is trained again, not confirmed "
                     f"(`python benchmarks/campaign.py --rerun {row.id} --only {row.id}`).")
    if row.trains and result and result["stopped"] == "budget" and result["paper_epochs"] > result["epochs"]:
        lines.append(f"- The budget ended the run at epoch {result['epochs']} of {result['paper_epochs']}; to "
                     f"finish it: `{' '.join(campaign.train_command(row, Path(run)))} --resume --epochs "
                     f"{result['paper_epochs']} --threads 1`, then the test command above.")
    return lines + [""]


def footer(rows: list[campaign.Row], runs: Path) -> list[str]:
    used = left = 0.0
    for row in rows:
        rd = runs / row.id
        record = campaign.shown_result(runs, row.id)[0] or campaign.read_json(rd / "progress.json") or {}
        trained = max(record.get("train_seconds", 0.0), campaign.run_state(rd / "run").train_seconds)
        used += max(record.get("cpu_seconds", 0.0), trained)
        if "figure" not in record and row.budget_hours > 0 and not row.reason:
            left += max(0.0, row.budget_hours * 3600 - (trained if row.trains and not row.compare else 0.0))
    return ["## CPU time", "",
            f"The campaign has used **{used / 3600:.2f} CPU-hours** (every step's CPU time, or its recorded "
            f"training seconds where a step was killed); the rows not yet measured have at most "
            f"**{left / 3600:.2f} CPU-hours** of budget left (one thread each, one row at a time).", ""]


def render(rows: list[campaign.Row], runs: Path, docs: Path, repo: Path = REPO) -> str:
    head = ["# Reproduction table", "",
            "Every family's headline figure beside its paper's, run toward the paper's length under a CPU-hour "
            "budget (issue 27). **Generated** by `python benchmarks/reproduction_table.py` from the results "
            "that `python benchmarks/campaign.py` saved (each row's result.json, kept also in "
            "`benchmarks/results/ROW.json`, committed, since run directories are not); do not edit by hand. The test figure is measured once, "
            "on the weights of the epoch validation chose. A figure measured at a commit before a change to the "
            "files that could move it (the family's model file and the modules of `vaelab/models/` and "
            "`vaelab/nn/` it imports, `vaelab/data/`, `vaelab/training/`, `vaelab/evaluation/`, its profile, "
            "and for a comparison's row its module in `vaelab/compare/`, the comparison modules it imports "
            "and `vaelab/compare/cli.py`) is marked **stale**, until the row is run again or "
            "`python benchmarks/campaign.py --confirm ROW` confirms the figure at a later commit without "
            "training it again: the recorded evaluation, run at that commit on the row's saved run, gives the "
            "recorded figure exactly, and a two-epoch training probe of the row's command (one thread) saves "
            "bit-identical weights and metrics with the code of the measured commit and with the later one "
            "(\"confirmed at\" beside the commit; staleness then counts from that commit). The campaign does "
            "so itself for each stale row it passes, and runs a stale comparison again (after the same probe "
            "where the row trains). The wall and CPU "
            "times count every recorded epoch, those of steps stopped at a session's end included.", "",
            "Run or carry on the campaign (one row at a time, `nice`, one thread; safe to kill at any moment): "
            "`nice python benchmarks/campaign.py [--only ROW]`; see where it stands: "
            "`python benchmarks/campaign.py --status`. Provenance tags: [P] paper text, [O] official code, "
            "[S] secondary quote, [M] from memory (../shared/reference/paper-tables.md).", "",
            ]
    header = ["| row | families | paper | goal | ours (campaign) | epochs (ours / paper's) | wall / CPU | profile "
              "| commit | curve | earlier measurements (not from the campaign) |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    body = []
    for group, (title, intro) in GROUPS.items():
        chosen = [row for row in rows if row.group == group]
        if chosen:
            body += [f"## {title}", "", intro, "", *header, *(table_line(row, runs, docs, repo) for row in chosen), ""]
    covered = {f for row in rows for f in row.families}
    body += [f"Families covered: {len(covered)} ({', '.join(f'`{f}`' for f in sorted(covered))}).", ""]
    more = ["## Rows: protocol, command, budget", ""] + [line for row in rows for line in details(row, runs)]
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
