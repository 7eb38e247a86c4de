"""benchmarks/campaign.py and benchmarks/reproduction_table.py: a tiny row on the bundled digits.

The campaign's steps are subprocesses (a few seconds each to start), so the tests that run
one are the slow ones here; budget, staleness and table tests need no training.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


campaign = _load("campaign")
table = _load("reproduction_table")


def tiny(epochs=2, budget=1.0, first_chunk=1):
    """A VAE on scikit-learn's digits, quick profile, 200 validation images."""
    return campaign.Row("tiny", "vae", "tiny VAE", ("--val-size", "200"), "elbo", "1 nats [P]", 0.0, "nats",
                        "a test row", budget, epochs, data="digits", profile="quick", first_chunk=first_chunk)


DRIVER = """
import sys
sys.path.insert(0, {bench!r})
import campaign
row = campaign.Row("tiny", "vae", "tiny VAE", ("--val-size", "200"), "elbo", "1 nats", 0.0, "nats", "test",
                   1.0, {epochs}, data="digits", profile="quick", first_chunk={epochs})
sys.exit(campaign.main(sys.argv[1:], [row]))
"""


@pytest.mark.slow
def test_a_row_runs_to_its_length_and_writes_its_result(tmp_path):
    runs = tmp_path / "runs"
    assert campaign.main(["--runs", str(runs)], [tiny(epochs=2, first_chunk=2)]) == 0
    result = json.loads((runs / "tiny" / "result.json").read_text())
    assert (result["epochs"], result["paper_epochs"], result["stopped"]) == (2, 2, "paper's length")
    assert result["split"] == "test" and result["profile"] == "quick"
    test = json.loads((runs / "tiny" / "test.json").read_text())
    assert result["value"] == test["elbo"] and test["split"] == "test"
    assert len(result["commit"]) == 40 and "vaelab/models/vae.py" in result["paths"]
    assert result["cpu_seconds"] > 0 and result["train_seconds"] > 0
    assert (runs / "tiny" / "curves.png").stat().st_size > 0
    steps = json.loads((runs / "tiny" / "progress.json").read_text())["steps"]
    assert [s["step"] for s in steps] == ["train", "curves", "eval"]
    # A second start finds the result and runs nothing.
    assert campaign.main(["--runs", str(runs)], [tiny(epochs=2)]) == 0
    assert len(json.loads((runs / "tiny" / "progress.json").read_text())["steps"]) == 3


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_finishes_the_same_epochs(tmp_path, capsys):
    runs, epochs = tmp_path / "runs", 30
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER.format(bench=str(REPO / "benchmarks"), epochs=epochs))
    env = {**os.environ, "VAELAB_TEST_WRITE_DELAY": "0.05"}  # slow every checkpoint write: a kill lands mid-run
    proc = subprocess.Popen([sys.executable, str(driver), "--runs", str(runs)], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = runs / "tiny" / "run" / "checkpoints" / "last.safetensors"
    deadline = time.monotonic() + 60
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the campaign and its training step together
    proc.wait()
    assert not (runs / "tiny" / "result.json").exists()
    done = campaign.run_state(runs / "tiny" / "run").epochs
    assert 1 <= done < epochs

    assert campaign.main(["--runs", str(runs), "--status"], [tiny(epochs=epochs)]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert line.split()[:2] == ["tiny", "left"] and f"epochs {done}/{epochs}" in line

    assert subprocess.run([sys.executable, str(driver), "--runs", str(runs)], capture_output=True).returncode == 0
    result = json.loads((runs / "tiny" / "result.json").read_text())
    assert result["epochs"] == epochs and result["stopped"] == "paper's length"
    epochs_logged = {json.loads(x)["epoch"] for x in (runs / "tiny" / "run" / "metrics.jsonl").read_text().splitlines()}
    assert epochs_logged == set(range(1, epochs + 1))

    assert campaign.main(["--runs", str(runs), "--status"], [tiny(epochs=epochs)]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert line.split()[:2] == ["tiny", "done"] and f"epochs {epochs}/{epochs}" in line


def _state(epochs, seconds, stopped=False):
    return campaign.RunState(epochs=epochs, train_seconds=sum(seconds), epoch_seconds=list(seconds),
                             stopped_early=stopped)


def test_chunks_extend_until_the_budget_then_stop():
    row = tiny(epochs=3000, budget=1.0)  # one hour
    assert campaign.next_target(row, _state(0, [])) == 1  # first chunk: learn the pace
    assert campaign.next_target(row, _state(1, [60.0])) == 60  # an hour of 60-s epochs, in one chunk
    assert campaign.next_target(row, _state(50, [60.0] * 50)) == 60
    assert campaign.next_target(row, _state(60, [60.0] * 60)) is None  # budget spent
    assert campaign.next_target(row, _state(59, [60.0] * 59 + [35.0])) is None  # < half an epoch left
    assert campaign.next_target(tiny(epochs=5, budget=1.0), _state(1, [1.0])) == 5  # paper's length caps it
    assert campaign.next_target(row, _state(9, [1.0] * 9, stopped=True)) is None
    long = tiny(epochs=0, budget=6.0)  # length unknown: the budget alone, an hour a chunk at most
    assert campaign.next_target(long, _state(1, [600.0])) == 7


def test_status_counts_time_from_the_run_and_estimates_what_is_left(tmp_path, capsys):
    run = tmp_path / "runs" / "tiny" / "run"
    run.mkdir(parents=True)
    (run / "metrics.jsonl").write_text("".join(json.dumps({"epoch": e, "seconds": 36.0}) + "\n" for e in (1, 2))
                                       + '{"epoch": 3, "seco')  # a line cut by a kill
    campaign.main(["--runs", str(tmp_path / "runs"), "--status"], [tiny(epochs=10, budget=1.0)])
    line = capsys.readouterr().out.splitlines()[0]
    assert "left" in line and "time 0.02 / 1 CPU-h" in line and "36.0 s/epoch" in line
    assert "~0.10 h left" in line  # 10 epochs of 36 s (no checkpoint: none done) < the budget


def test_budget_counts_cpu_seconds_so_waiting_for_the_cores_costs_nothing(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    lines = [{"epoch": 1, "seconds": 400.0, "cpu_seconds": 40.0},  # a niced run that waited
             {"epoch": 2, "seconds": 50.0}]                       # a line from before CPU time was recorded
    (run / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    st = campaign.run_state(run)
    assert st.train_seconds == 90.0 and st.epoch_seconds == [40.0, 50.0]


def _git(repo, *args):
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t"})
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()


def test_a_figure_is_stale_after_a_change_to_a_recorded_path_only(tmp_path):
    repo = tmp_path / "repo"
    (repo / "vaelab" / "models").mkdir(parents=True)
    (repo / "vaelab" / "models" / "vae.py").write_text("a = 1\n")
    (repo / "README.md").write_text("x\n")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    measured = _git(repo, "commit", "-qm", "one")
    result = {"commit": measured, "paths": ["vaelab/models/vae.py", "vaelab/training/"], "dirty": False}
    assert table.stale(result, repo) == ""
    (repo / "README.md").write_text("y\n")
    _git(repo, "commit", "-qam", "docs")
    assert table.stale(result, repo) == ""  # a change elsewhere moves nothing
    (repo / "vaelab" / "models" / "vae.py").write_text("a = 2\n")
    _git(repo, "commit", "-qam", "model")
    assert "vaelab/models/vae.py" in table.stale(result, repo)
    assert "not in this repository" in table.stale({**result, "commit": "0" * 40}, repo)
    assert table.stale(result, repo, paths=["vaelab/training/"]) == ""  # the row's paths of today, where given


def test_a_row_watches_the_layer_modules_its_families_import_and_no_others():
    rows = {row.id: row for row in campaign.ROWS}
    m2, adain = campaign.relevant_paths(rows["m2-100"]), campaign.relevant_paths(rows["adain-vc-vc"])
    assert {"vaelab/models/ssvae.py", "vaelab/models/base.py", "vaelab/nn/mlp.py"} <= set(m2)
    assert "vaelab/nn/speech.py" not in m2 and not any(p.endswith("/") and "/nn" in p for p in m2)
    assert {"vaelab/models/adain_vc.py", "vaelab/nn/speech.py"} <= set(adain)
    assert "vaelab/training/" in m2 and "vaelab/profiles/m2/" in m2


def test_a_comparison_row_watches_its_comparison_and_what_it_imports_not_the_others():
    rows = {row.id: row for row in campaign.ROWS}
    parzen, adain = campaign.relevant_paths(rows["aae-parzen-normal"]), campaign.relevant_paths(rows["adain-vc-vc"])
    assert {"vaelab/compare/aae_vs_vae.py", "vaelab/compare/common.py", "vaelab/compare/cli.py",
            "vaelab/nn/priors.py", "vaelab/models/aae.py"} <= set(parzen)
    assert "vaelab/compare/voice_conversion.py" not in parzen and "vaelab/compare/" not in parzen
    assert "vaelab/compare/voice_conversion.py" in adain and "vaelab/compare/aae_vs_vae.py" not in adain
    assert not any(p.startswith("vaelab/compare/") for p in campaign.relevant_paths(rows["m2-100"]))


def _result(row, **changes):
    return {"row": row.id, "figure": 5.0, "value": 5.0, "unit": row.unit, "split": "test", "n": 10, "reached": False,
            "epochs": 3, "paper_epochs": 10, "best_epoch": 2, "stopped": "budget", "wall_seconds": 7200.0,
            "cpu_seconds": 3600.0, "train_seconds": 3000.0, "profile": "paper", "commit": "c" * 40, "paths": [],
            **changes}


def test_the_table_reads_saved_results_only(tmp_path, monkeypatch):
    rows = [tiny(epochs=10, budget=2.0), campaign.Row("other", "m2", "other row", (), "classification_error",
                                                      "11.97 % [S]", 11.97, "%", "protocol", 4.0, 3000)]
    runs = tmp_path / "runs"
    (runs / "tiny").mkdir(parents=True)
    (runs / "tiny" / "result.json").write_text(json.dumps(_result(rows[0])))
    (runs / "tiny" / "curves.png").write_bytes(b"png")
    # A run directory with metrics but no saved result: in progress, never a figure.
    (runs / "other" / "run").mkdir(parents=True)
    (runs / "other" / "run" / "metrics.jsonl").write_text('{"epoch": 1, "seconds": 5, "val": {"error": 0.01}}\n')
    # A row part-way through its budget: its progress file and curve so far.
    rows.append(_renamed(tiny(epochs=10, budget=1.0), "third"))
    (runs / "third").mkdir()
    (runs / "third" / "progress.json").write_text(json.dumps({"epochs": 4, "train_seconds": 1800.0,
                                                              "cpu_seconds": 1908.0, "steps": []}))
    (runs / "third" / "curves.png").write_bytes(b"png")
    monkeypatch.setattr(table, "stale", lambda result, repo=None, paths=None: "changed since: vaelab/models/vae.py")
    page = table.render(rows, runs, tmp_path / "docs")
    tiny_line = [x for x in page.splitlines() if x.startswith("| tiny VAE")][0]
    assert "**5.00 nats**" in tiny_line and "**stale**" in tiny_line and "3 / 10" in tiny_line
    assert "2.00 h / 1.00 h" in tiny_line and "`ccccccc`" in tiny_line and "[curve](images/reproduction/tiny.png)" \
        in tiny_line
    assert (tmp_path / "docs" / "images" / "reproduction" / "tiny.png").read_bytes() == b"png"
    other_line = next(x for x in page.splitlines() if x.startswith("| other row"))
    assert "not run yet" in other_line and "1.00" not in other_line
    assert "--resume --epochs 10" in page  # the budget ended it: the command that finishes it
    third = [x for x in page.splitlines() if x.startswith("| tiny VAE")][1]
    assert "in progress (4 epochs, 0.50 h of 1 CPU-hours trained)" in third and "tiny.png" not in third \
        and "(so far)" in third
    assert "**1.53 CPU-hours**" in page and "**4.50 CPU-hours**" in page  # used; left (other: 4, third: 0.5)


IMAGE_ROWS = ("m2-100", "aae-semi-100", "m1m2-100", "aae-cluster-16", "aae-cluster-30", "pixelcnn", "pixelrnn",
              "vae-iwae-t1")  # issue 27's table


def test_every_row_is_a_valid_command_and_agrees_with_its_profile(tmp_path):
    from vaelab.cli import TABLE_ORDER, _run_settings, build_parser
    from vaelab.models import model_class
    from vaelab.profiles import read_profile

    parser = build_parser()
    ids = [row.id for row in campaign.ROWS]
    assert len(ids) == len(set(ids))
    runs = Path("runs/campaign")
    for row in campaign.ROWS:
        run = runs / row.id / "run"
        assert row.unit in ("%", "nats", "perplexity", "dB", "degrees", "MSE", "MMD²", "goals"), row.id
        assert row.budget_hours >= 0 and row.better in ("lower", "higher") and row.group in table.GROUPS
        assert row.goal is None or isinstance(row.goal, (int, float, str)), row.id
        if row.trains:
            args = parser.parse_args(campaign.train_command(row, run)[1:]
                                     + ["--resume", "--epochs", "5", "--threads", "1"])
            assert (args.model, args.profile) == (row.family, row.profile or None)
            _, config = _run_settings(args, model_class(row.family), tmp_path / row.id)  # the profile plus the row's
            assert (config.threads, config.epochs) == (1, 5)
            if row.profile:
                assert config.profile == row.profile
                stated = read_profile(row.family, row.profile).get("epochs")
                assert row.paper_epochs == (stated or 0), row.id  # the paper's length is the profile's
        if row.compare:
            args = parser.parse_args(campaign.compare_command(row, runs)[1:] + ["--threads", "1"])
            assert args.comparison == row.compare.name
            assert (getattr(args, "split", None) == "test") == campaign.has_split(row.compare.name)
            assert "{" not in " ".join(campaign.compare_command(row, runs))  # every placeholder filled
            assert all(w in ids[:ids.index(row.id)] for w in campaign.waits_for(row)), row.id  # it runs first
        elif row.check:
            assert campaign.eval_command(row, run)[:3] == ["python", "-m", row.check]
        else:
            parser.parse_args(campaign.eval_command(row, run)[1:] + ["--threads", "1"])
            assert row.metric in TABLE_ORDER
    assert sum(row.budget_hours for row in campaign.ROWS if row.id in IMAGE_ROWS) == 27  # issue 27's table
    assert {row.group for row in campaign.ROWS if row.id in IMAGE_ROWS} == {"campaign"}


def test_every_registered_family_has_a_row():
    from vaelab.models import names

    covered = {family for row in campaign.ROWS for family in row.families}
    assert set(names()) <= covered, f"families without a row in benchmarks/campaign.py: {set(names()) - covered}"
    assert covered <= set(names())  # no row names a family that does not exist


def test_short_rows_run_after_the_training_rows_and_before_the_long_ones():
    ids = [row.id for row in campaign.ROWS]
    long = [row.id for row in campaign.ROWS if row.id in IMAGE_ROWS or row.data == "ptb" and row.trains]
    assert [i for i in ids if i in long] == ["m2-100", "lstm-lm-ptb", "text-vae-ptb", "aae-semi-100", "m1m2-100",
                                            "aae-cluster-16", "aae-cluster-30", "pixelcnn", "pixelrnn", "vae-iwae-t1"]
    assert ids.index("lstm-lm-ptb") < ids.index("seq3-secret-code")  # seq3's judge and prior come first
    short = ids[2:ids.index("text-vae-ptb")]
    assert short and all(campaign.ROWS[ids.index(i)].budget_hours <= 0.75 for i in short)
    # a comparison that several rows read is budgeted once, on the first of them
    by_key = {}
    for row in campaign.ROWS:
        if row.compare and row.compare.key:
            by_key.setdefault(row.compare.key, []).append(row.budget_hours)
    assert all(budgets[0] > 0 and not any(budgets[1:]) for budgets in by_key.values()), by_key


def test_a_failed_row_is_reported_and_the_next_one_still_runs(tmp_path, monkeypatch, capsys):
    ran = []

    def fake(row, runs):
        ran.append(row.id)
        if row.id == "a":
            raise campaign.StepFailed("exited with status 2")

    monkeypatch.setattr(campaign, "run_row", fake)
    rows = [_renamed(tiny(), "a"), _renamed(tiny(), "b")]
    assert campaign.main(["--runs", str(tmp_path)], rows) == 1
    assert ran == ["a", "b"] and "error: [a] exited with status 2" in capsys.readouterr().err
    assert campaign.main(["--runs", str(tmp_path), "--only", "c"], rows) == 2  # an unknown row, in one line


def _renamed(row, new_id):
    return dataclasses.replace(row, id=new_id)


def test_status_names_the_row_a_live_campaign_is_on(tmp_path):
    runs, rows = tmp_path / "runs", [_renamed(tiny(), "a"), _renamed(tiny(), "b")]
    with campaign.campaign_lock(runs):
        campaign.write_json(runs / "current.json", {"row": "b"})
        states = [line.split()[1] for line in campaign.status_lines(rows, runs)[:2]]
        assert states == ["left", "running"]
        assert campaign.status_lines(rows, runs)[-1].startswith("campaign: running")
    # The lock died with its holder: current.json alone means nothing.
    assert [line.split()[1] for line in campaign.status_lines(rows, runs)[:2]] == ["left", "left"]


def test_a_metric_the_evaluation_lacks_fails_the_row_in_one_line(tmp_path, monkeypatch):
    rd = tmp_path / "runs" / "tiny"
    (rd / "run").mkdir(parents=True)
    (rd / "curves.png").write_bytes(b"png")

    def fake_step(cmd, log, stdout=None):
        if stdout:
            stdout.write_text(json.dumps({"split": "test", "elbo": -90.0}))
        return {"command": " ".join(cmd), "rc": 0, "wall": 1.0, "cpu": 1.0, "finished": "now"}

    monkeypatch.setattr(campaign, "run_step", fake_step)
    row = _renamed(tiny(), "tiny")
    with pytest.raises(campaign.StepFailed, match="no nll"):
        campaign.measure_row(dataclasses.replace(row, metric="nll"), rd)
    assert not (rd / "result.json").exists()
    assert campaign.measure_row(row, rd)["figure"] == -90.0
    assert json.loads((rd / "result.json").read_text())["value"] == -90.0


def test_a_two_stage_row_fits_its_prior_before_the_test_figure(tmp_path, monkeypatch):
    rd = tmp_path / "runs" / "codes"
    (rd / "run").mkdir(parents=True)
    (rd / "curves.png").write_bytes(b"png")
    commands = []

    def fake_step(cmd, log, stdout=None):
        commands.append(cmd[:2])
        if stdout:
            stdout.write_text(json.dumps({"split": "test", "nll_bound": 80.0}))
        return {"command": " ".join(cmd), "rc": 0, "wall": 1.0, "cpu": 1.0, "finished": "now"}

    monkeypatch.setattr(campaign, "run_step", fake_step)
    row = campaign.Row("codes", "vqvae", "VQ-VAE and its prior", (), "nll_bound", "–", 90.0, "nats", "p", 1.0, 5,
                       prior=("--epochs", "3"))
    assert campaign.measure_row(row, rd)["reached"] is True
    assert commands == [["vaelab", "train-prior"], ["vaelab", "eval"]]


# -- rows measured by `vaelab compare` --------------------------------------------------------------
def compare_row(row_id="parzen", metric="parzen_nats", goal=340.0, budget=0.5, **changes):
    spec = campaign.Compare("aae-vs-vae", ("--epochs", "1"), pick=(("prior", "normal"), ("model", "aae")),
                            key="aae-vs-vae")
    settings = {"compare": spec, "trains": False, "better": "higher", "profile": "", "group": "headline", **changes}
    return campaign.Row(row_id, "aae", "AAE Parzen", (), metric, "340 ± 2 nats [S]", goal, "nats", "protocol",
                        budget, 8, **settings)


RESULTS = {"comparison": "aae-vs-vae", "settings": {"epochs": 1, "n_test": 100},
           "rows": [{"prior": "normal", "model": "aae", "parzen_nats": 146.2, "mmd2": 0.012},
                    {"prior": "normal", "model": "vae", "parzen_nats": 189.7, "mmd2": 0.001}]}


def fake_compare(calls, results=RESULTS):
    def step(cmd, log, stdout=None):
        calls.append(cmd)
        out = Path(cmd[cmd.index("--out") + 1])
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(results))
        return {"command": " ".join(cmd), "rc": 0, "wall": 2.0, "cpu": 1.5, "finished": "now"}
    return step


def test_a_compare_row_reads_its_figure_from_the_picked_results_row(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(campaign, "run_step", fake_compare(calls))
    runs = tmp_path / "runs"
    result = campaign.run_row(compare_row(), runs)
    assert calls and calls[0][:3] == ["vaelab", "compare", "aae-vs-vae"]
    assert calls[0][calls[0].index("--out") + 1] == str(runs / "compare" / "aae-vs-vae")
    assert "--split" not in calls[0]  # aae-vs-vae has no split: it measures the test images
    assert (result["value"], result["figure"], result["goal"], result["reached"]) == (146.2, 146.2, 340.0, False)
    assert result["stopped"] == "comparison" and result["n"] == 100 and result["cpu_seconds"] == 1.5
    assert "vaelab/compare/aae_vs_vae.py" in result["paths"] and "vaelab/models/aae.py" in result["paths"]
    # A goal that is another column of the same row, and a goal-less (reported) row.
    vs = campaign.measure_row(compare_row("mmd", metric="mmd2", goal="parzen_nats", better="lower"), runs / "mmd", runs)
    assert (vs["figure"], vs["goal"], vs["reached"]) == (0.012, 146.2, True)
    assert campaign.measure_row(compare_row("rep", goal=None), runs / "rep", runs)["reached"] is None
    assert len(calls) == 1  # the rows sharing the comparison read it, they do not run it again


def test_a_comparison_with_a_split_is_measured_on_test():
    row = dataclasses.replace(compare_row(), compare=campaign.Compare("voice-conversion", ("--run", "{run}")))
    cmd = campaign.compare_command(row, Path("R"))
    assert cmd[cmd.index("--split") + 1] == "test" and cmd[cmd.index("--run") + 1] == str(Path("R/parzen/run"))


def test_a_finished_compare_step_is_not_run_again(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(campaign, "run_step", fake_compare(calls))
    runs = tmp_path / "runs"
    wrong = compare_row(metric="parzen")  # a key the comparison does not write
    assert campaign.main(["--runs", str(runs)], [wrong]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "gave no parzen" in err and "fix the row's metric" in err \
        and "parzen_nats" in err  # names the keys there are
    assert len(calls) == 1 and not (runs / "parzen" / "result.json").exists()
    # Fixed, the next start reads the finished comparison: no second run.
    assert campaign.main(["--runs", str(runs)], [compare_row()]) == 0
    assert len(calls) == 1 and json.loads((runs / "parzen" / "result.json").read_text())["figure"] == 146.2
    steps = json.loads((runs / "parzen" / "progress.json").read_text())["steps"]
    assert [s["step"] for s in steps] == ["compare"]
    # Other options are another comparison: it runs.
    other = compare_row("again", compare=campaign.Compare("aae-vs-vae", ("--epochs", "2"), compare_row().compare.pick,
                                                          key="aae-vs-vae"))
    campaign.run_row(other, runs)
    assert len(calls) == 2


def test_a_killed_comparison_runs_again(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    out = runs / "compare" / "aae-vs-vae"
    out.mkdir(parents=True)
    (out / "results.json").write_text(json.dumps(RESULTS))  # a results.json without the campaign's marker
    calls = []
    monkeypatch.setattr(campaign, "run_step", fake_compare(calls))
    campaign.run_row(compare_row(), runs)
    assert len(calls) == 1


def test_a_missing_pick_or_failed_comparison_is_one_line(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(campaign, "run_step", fake_compare(calls))
    row = dataclasses.replace(compare_row(), compare=dataclasses.replace(compare_row().compare,
                                                                         pick=(("prior", "mixture"),)))
    with pytest.raises(campaign.StepFailed, match="no row with prior = 'mixture'.*fix the row's pick"):
        campaign.measure_row(row, tmp_path / "runs" / "parzen", tmp_path / "runs")

    def failing(cmd, log, stdout=None):
        return {"command": " ".join(cmd), "rc": 2, "wall": 1.0, "cpu": 1.0, "finished": "now"}

    monkeypatch.setattr(campaign, "run_step", failing)
    with pytest.raises(campaign.StepFailed, match="exited with status 2"):
        campaign.measure_row(compare_row(), tmp_path / "other" / "parzen", tmp_path / "other")
    assert not (tmp_path / "other" / "compare" / "aae-vs-vae" / "campaign.json").exists()


def test_a_row_reading_another_rows_run_waits_for_it(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(campaign, "run_step", fake_compare(calls))
    row = dataclasses.replace(compare_row(), compare=campaign.Compare("secret-code", ("--lm-run", "{row:lm}"),
                                                                      pick=RESULTS_PICK))
    runs = tmp_path / "runs"
    assert campaign.run_row(row, runs) is None and not calls
    assert "waits for row lm" in capsys.readouterr().out
    assert campaign.status_lines([row], runs)[0].split()[1] == "waiting"
    (runs / "lm").mkdir(parents=True)
    (runs / "lm" / "result.json").write_text("{}")
    campaign.run_row(row, runs)
    assert calls[0][calls[0].index("--lm-run") + 1] == str(runs / "lm" / "run") and "--split" in calls[0]


RESULTS_PICK = (("prior", "normal"), ("model", "aae"))


def test_a_check_row_counts_the_goals_met(tmp_path, monkeypatch):
    rd = tmp_path / "runs" / "cmma"
    (rd / "run").mkdir(parents=True)
    (rd / "curves.png").write_bytes(b"png")
    commands = []

    def fake_step(cmd, log, stdout=None):
        commands.append(cmd)
        stdout.write_text(json.dumps({"split": "test", "n_checked": 200, "met": {"a": True, "b": True, "c": False}}))
        return {"command": " ".join(cmd), "rc": 0, "wall": 1.0, "cpu": 1.0, "finished": "now"}

    monkeypatch.setattr(campaign, "run_step", fake_step)
    row = campaign.Row("cmma", "cmma", "CMMA", (), "met", "–", 3, "goals", "p", 0.5, 20,
                       check="vaelab.evaluation.attribute_checks", better="higher")
    result = campaign.measure_row(row, rd)
    assert commands[0][:3] == ["python", "-m", "vaelab.evaluation.attribute_checks"] and "--split" in commands[0]
    assert (result["figure"], result["of"], result["reached"], result["n"]) == (2.0, 3, False, 200)
    assert campaign.shown(row, result["figure"], result["of"]) == "2 of 3 goals"


def test_the_table_groups_rows_and_lists_a_family_without_a_figure(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(campaign, "run_step", fake_compare(calls))
    runs = tmp_path / "runs"
    measured = compare_row()
    campaign.run_row(measured, runs)
    none = campaign.Row("nothing", "conv-ae", "conv-ae", (), "mse", "–", None, "MSE", "p", 0.0, 0, group="headline",
                        reason="its docs claim no figure")
    rows = [tiny(epochs=10, budget=2.0), measured, none]
    monkeypatch.setattr(table, "stale", lambda result, repo=None, paths=None: "")
    page = table.render(rows, runs, tmp_path / "docs")
    lines = page.splitlines()
    first, second = lines.index("## " + table.GROUPS["campaign"][0]), lines.index("## " + table.GROUPS["headline"][0])
    tiny_at = next(i for i, x in enumerate(lines) if x.startswith("| tiny VAE"))
    aae_at = next(i for i, x in enumerate(lines) if x.startswith("| AAE Parzen"))
    assert first < tiny_at < second < aae_at
    assert "**146.20 nats**" in lines[aae_at] and "not reached" in lines[aae_at] and "≥ 340 nats" in lines[aae_at]
    assert "no measurable figure: its docs claim no figure" in next(x for x in lines if x.startswith("| conv-ae"))
    (runs / "started").mkdir()
    (runs / "started" / "progress.json").write_text(json.dumps({"steps": [{"step": "compare", "cpu": 1.0}]}))
    started = table.render([compare_row("started")], runs, tmp_path / "docs")
    assert "started: the comparison ran, no figure read yet" in started
    assert "Not measured: its docs claim no figure" in page
    assert "vaelab compare aae-vs-vae --epochs 1 --out runs/campaign/compare/aae-vs-vae" in page
    # the footer: the comparison's 1.5 CPU-seconds used; the tiny row's 2 hours left, the reason row none
    assert "**2.00 CPU-hours**" in page
    assert campaign.main(["--runs", str(runs), "--status"], rows) == 0
    campaign.run_row(none, runs)  # listed, never run
    assert not (runs / "nothing").exists()


def test_a_row_that_trains_hands_its_run_to_its_comparison(tmp_path, monkeypatch):
    calls, trained = [], []
    results = {"comparison": "voice-conversion", "settings": {"split": "test"},
               "rows": [{"audio": "run: conversions, 30 speaker pairs", "n": 1500, "speaker: read as target": 0.69}]}
    compare = fake_compare(calls, results)

    def step(cmd, log, stdout=None):
        if cmd[1] == "curves":
            calls.append(cmd)
            return {"command": " ".join(cmd), "rc": 0, "wall": 1.0, "cpu": 1.0, "finished": "now"}
        return compare(cmd, log, stdout)

    monkeypatch.setattr(campaign, "run_step", step)
    monkeypatch.setattr(campaign, "train_row", lambda row, rd: trained.append(row.id))
    row = next(r for r in campaign.ROWS if r.id == "adain-vc-vc")
    runs = tmp_path / "runs"
    result = campaign.run_row(row, runs)
    assert trained == ["adain-vc-vc"] and calls[0][:3] == ["vaelab", "compare", "voice-conversion"]
    assert calls[0][calls[0].index("--run") + 1] == str(runs / "adain-vc-vc" / "run")
    assert calls[0][calls[0].index("--split") + 1] == "test" and calls[1][1] == "curves"
    assert (round(result["figure"], 6), result["reached"], result["split"], result["n"]) == (69.0, False, "test", 1500)
    assert campaign.train_command(row, Path("R"))[:5] == ["vaelab", "train", "adain-vc", "--data", "fsdd"]
    assert "--profile" not in campaign.train_command(row, Path("R"))  # the documented command: family defaults


# -- confirming a stale figure (--confirm) ------------------------------------------------------------
EVAL = "vaelab eval RUNS/tiny/run --data digits --split test --json"
TRAIN = "vaelab train vae --data digits --profile quick --val-size 200 --out RUNS/tiny/run"


def _measured(tmp_path, value=-90.0):
    """A git repository whose first commit measured the tiny row, and a runs directory holding its result."""
    repo = tmp_path / "repo"
    (repo / "vaelab" / "training").mkdir(parents=True)
    (repo / "vaelab" / "training" / "loop.py").write_text("a = 1\n")
    (repo / "README.md").write_text("x\n")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    measured = _git(repo, "commit", "-qm", "one")
    runs = tmp_path / "runs"
    (runs / "tiny" / "run").mkdir(parents=True)
    (runs / "tiny" / "run" / "run.json").write_text("{}")
    result = {**_result(tiny(), figure=value, value=value, of=None, commit=measured, dirty=False,
                        paths=["vaelab/training/"], measured="2026-01-01T00:00:00Z"),
              "eval_command": EVAL, "command": TRAIN}
    (runs / "tiny" / "result.json").write_text(json.dumps(result))
    return repo, runs, measured


def _change(repo, text, message="trainer"):
    (repo / "vaelab" / "training" / "loop.py").write_text(text)
    return _git(repo, "commit", "-qam", message)


def _fake_eval(value, seen=None):
    def step(cmd, log, stdout=None, tree=None):
        if seen is not None:
            seen.append((cmd, tree))
        stdout.write_text(json.dumps({"split": "test", "elbo": value}))
        return {"command": " ".join(cmd), "rc": 0, "wall": 1.0, "cpu": 1.0, "finished": "now"}
    return step


def _fake_probe(seen, moved=False):
    """Writes what a training probe saves: a model and metrics (the HEAD tree's weights moved, if asked)."""
    import torch
    from safetensors.torch import save_file

    def probe(tree, command, out, epochs, log, who):
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tree, capture_output=True, text=True).stdout.strip()
        seen.append((tree, head, who, command, epochs))
        out.mkdir(parents=True)
        shift = 1e-7 if moved and who == "HEAD" else 0.0
        save_file({"w": torch.arange(4.0) + shift}, str(out / "model.safetensors"))
        lines = [{"epoch": e, "seconds": 1.0 + len(seen), "train": {"loss": 3.0 / e}} for e in range(1, epochs + 1)]
        (out / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return probe


def test_confirm_records_a_stale_figure_that_still_holds_and_staleness_counts_from_it(tmp_path, monkeypatch, capsys):
    repo, runs, measured = _measured(tmp_path)
    head = _change(repo, "a = 1  # a refactor\n")
    assert "vaelab/training/loop.py" in campaign.stale(json.loads((runs / "tiny" / "result.json").read_text()), repo)
    evals, probes = [], []
    monkeypatch.setattr(campaign, "run_step", _fake_eval(-90.0, evals))
    monkeypatch.setattr(campaign, "probe", _fake_probe(probes))
    assert campaign.confirm([tiny()], ["tiny"], runs, repo, probe_epochs=2) == 0
    assert "[tiny] confirmed at " + head[:7] in capsys.readouterr().out
    # the recorded evaluation, RUNS being the runs directory, with HEAD's code
    assert evals[0][0][:3] == ["vaelab", "eval", str(runs / "tiny" / "run")] and evals[0][1] == repo
    # the probe ran the recorded command at the measured commit (a worktree, gone since) and at HEAD
    (old_tree, old_head, _, command, epochs), (new_tree, new_head, who, _, _) = probes
    assert (old_head, new_head, new_tree, who, command, epochs) == (measured, head, repo, "HEAD", TRAIN, 2)
    assert not old_tree.exists() and str(old_tree) not in _git_out(repo, "worktree", "list")
    result = json.loads((runs / "tiny" / "result.json").read_text())
    assert result["commit"] == measured and result["confirmed"]["commit"] == head
    assert result["confirmed"]["from"] == measured and "bit-identical" in result["confirmed"]["how"]
    assert campaign.stale(result, repo) == "" and table.stale(result, repo) == ""
    page = table.render([tiny()], runs, tmp_path / "docs", repo)
    line = next(x for x in page.splitlines() if x.startswith("| tiny VAE"))
    assert f"`{measured[:7]}` (confirmed at `{head[:7]}`)" in line and "**stale**" not in line
    # A later change to its paths makes it stale again; nothing to confirm until then.
    with pytest.raises(campaign.Refused, match="nothing to confirm"):
        campaign.confirm_row(tiny(), runs, repo)
    _change(repo, "a = 2\n")
    assert "vaelab/training/loop.py" in campaign.stale(result, repo)


def _git_out(repo, *args):
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True).stdout


@pytest.mark.parametrize("moved", ["probe", "eval"])
def test_a_figure_whose_checks_disagree_stays_stale(tmp_path, monkeypatch, capsys, moved):
    repo, runs, _ = _measured(tmp_path)
    _change(repo, "a = 2\n")
    before = (runs / "tiny" / "result.json").read_text()
    probes = []
    monkeypatch.setattr(campaign, "run_step", _fake_eval(-90.0 if moved == "probe" else -90.5))
    monkeypatch.setattr(campaign, "probe", _fake_probe(probes, moved=True))
    assert campaign.confirm([tiny()], ["tiny"], runs, repo) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("[tiny] not confirmed, still stale")
    if moved == "probe":
        assert "tensor w differs" in err and "re-run the row" in err
        assert not probes[0][0].exists()  # the worktree is removed after the probe
    else:
        assert "-90.50 nats, the recorded -90.00 nats" in err and not probes  # no probe after a wrong figure
    assert (runs / "tiny" / "result.json").read_text() == before
    assert campaign.stale(json.loads(before), repo)


def test_probes_differ_in_their_terms_but_not_their_timings(tmp_path):
    import torch
    from safetensors.torch import save_file

    for name, loss, seconds in (("a", 1.5, 3.0), ("b", 1.5, 4.0), ("c", 1.25, 3.0)):
        (tmp_path / name / "stage").mkdir(parents=True)
        save_file({"w": torch.ones(2)}, str(tmp_path / name / "stage" / "model.safetensors"))
        (tmp_path / name / "stage" / "metrics.jsonl").write_text(json.dumps(
            {"epoch": 1, "seconds": seconds, "cpu_seconds": seconds, "train": {"loss": loss}}) + "\n")
    assert campaign.compare_probes(tmp_path / "a", tmp_path / "b") == ""
    assert "epoch 1 train" in campaign.compare_probes(tmp_path / "a", tmp_path / "c")
    (tmp_path / "d").mkdir()
    assert "no model.safetensors" in campaign.compare_probes(tmp_path / "d", tmp_path / "a")


def test_confirm_refuses_in_one_line_what_it_cannot_confirm(tmp_path, monkeypatch, capsys):
    repo, runs, _ = _measured(tmp_path)
    monkeypatch.setattr(campaign, "run_step", lambda *a, **k: pytest.fail("nothing may run"))
    monkeypatch.setattr(campaign, "probe", lambda *a, **k: pytest.fail("nothing may run"))
    rows = [tiny(), _renamed(tiny(), "later"), compare_row()]
    (runs / "parzen").mkdir()
    (runs / "parzen" / "result.json").write_text(json.dumps({**_result(compare_row()), "commit": "0" * 40}))

    def refused(row_id):
        assert campaign.confirm(rows, [row_id], runs, repo) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("error: ")
        return err

    assert "nothing to confirm" in refused("tiny")  # not stale
    assert "not measured yet" in refused("later") and "--only later" in refused("later")
    assert "re-run it, it is short" in refused("parzen")
    _change(repo, "a = 2\n")
    (repo / "README.md").write_text("edited\n")
    assert "uncommitted changes" in refused("tiny")
    _git(repo, "commit", "-qam", "docs")
    (runs / "tiny" / "run" / "run.json").unlink()
    assert "run directory" in refused("tiny") and "is gone" in refused("tiny")
    dirty = json.loads((runs / "tiny" / "result.json").read_text())
    (runs / "tiny" / "result.json").write_text(json.dumps({**dirty, "dirty": True}))
    assert "uncommitted changes" in refused("tiny") and "re-run it" in refused("tiny")
    assert campaign.main(["--runs", str(runs), "--confirm", "nope"], rows) == 2
    assert "unknown row nope" in capsys.readouterr().err


@pytest.mark.slow
def test_confirm_for_real_on_a_tiny_run_then_a_trainer_change_that_moves_it(tmp_path, capsys):
    """This checkout's vaelab committed in a scratch repository: a refactor of the trainer is
    confirmed (real evaluation, real probes at both commits); a changed seed is not."""
    repo, runs = tmp_path / "repo", tmp_path / "runs"
    repo.mkdir()
    archive = subprocess.run(["git", "archive", "HEAD", "vaelab"], cwd=REPO, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(repo)], input=archive, check=True)
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    measured = _git(repo, "commit", "-qm", "measured")
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"}
    run = runs / "tiny" / "run"
    for cmd in (TRAIN.replace("RUNS", str(runs)) + " --epochs 1", EVAL.replace("RUNS", str(runs))):
        out = subprocess.run([sys.executable, "-m", *cmd.split(), "--threads", "1", "--no-progress"], cwd=repo,
                             env=env, capture_output=True, text=True, check=True).stdout
    value = json.loads(out)["elbo"]
    result = {**_result(tiny(), figure=value, value=value, of=None, commit=measured, dirty=False,
                        paths=["vaelab/training/"], measured="2026-01-01T00:00:00Z"),
              "eval_command": EVAL, "command": TRAIN}
    (runs / "tiny" / "result.json").write_text(json.dumps(result))
    assert run.is_dir()

    trainer = repo / "vaelab" / "training" / "trainer.py"
    trainer.write_text(trainer.read_text() + "\n# a refactor that moves no figure\n")
    refactor = _git(repo, "commit", "-qam", "refactor")
    assert campaign.confirm([tiny()], ["tiny"], runs, repo, probe_epochs=2) == 0
    assert json.loads((runs / "tiny" / "result.json").read_text())["confirmed"]["commit"] == refactor

    text = trainer.read_text()
    assert "torch.manual_seed(seed + self.ctx.rank)" in text
    trainer.write_text(text.replace("torch.manual_seed(seed + self.ctx.rank)", "torch.manual_seed(seed + 1)"))
    _git(repo, "commit", "-qam", "another seed")
    capsys.readouterr()
    assert campaign.confirm([tiny()], ["tiny"], runs, repo, probe_epochs=1) == 1
    assert "differs" in capsys.readouterr().err
    result = json.loads((runs / "tiny" / "result.json").read_text())
    assert result["confirmed"]["commit"] == refactor and "trainer.py" in campaign.stale(result, repo)
    assert _git_out(repo, "worktree", "list").count("\n") == 1  # every probe's worktree removed


def test_a_probe_trains_the_recorded_command_briefly_into_its_own_directory(tmp_path, monkeypatch):
    steps = []

    def step(cmd, log, stdout=None, tree=None):
        steps.append((cmd, tree))
        return {"command": " ".join(cmd), "rc": 0 if len(steps) < 3 else 1, "wall": 1.0, "cpu": 1.0, "finished": "now"}

    monkeypatch.setattr(campaign, "run_step", step)
    command = "vaelab train m1m2 --data mnist --profile paper --labels 100 --out RUNS/m1m2-100/run"
    campaign.probe(tmp_path / "tree", command, tmp_path / "out", 2, tmp_path / "log", "abc1234")
    first, second = steps[0][0], steps[1][0]
    assert first[:3] == ["vaelab", "train", "m1m2"] and first[first.index("--out") + 1] == str(tmp_path / "out")
    assert first[first.index("--m1-epochs") + 1] == "1"  # the first stage bounded too
    assert first[first.index("--epochs") + 1] == "1" and "--resume" not in first
    assert second[second.index("--epochs") + 1] == "2" and "--resume" in second
    assert steps[0][1] == tmp_path / "tree"
    with pytest.raises(campaign.NotConfirmed, match="probe at abc1234 exited with status 1"):
        campaign.probe(tmp_path / "tree", command, tmp_path / "again", 1, tmp_path / "log", "abc1234")


def test_a_stale_row_is_brought_up_to_head_once_and_its_earlier_comparison_kept(tmp_path, monkeypatch, capsys):
    repo, runs, measured = _measured(tmp_path)
    monkeypatch.setattr(campaign, "REPO", repo)
    monkeypatch.setattr(campaign, "relevant_paths", lambda row: ["vaelab/training/"])
    parzen, mmd = compare_row(), compare_row("mmd", metric="mmd2", goal=None)
    out = runs / "compare" / "aae-vs-vae"
    out.mkdir(parents=True)
    (out / "results.json").write_text(json.dumps(RESULTS))
    for row in (parzen, mmd):
        (runs / row.id).mkdir()
        (runs / row.id / "result.json").write_text(json.dumps(_result(row, commit=measured, dirty=False)))
    calls, evals, probes = [], [], []
    monkeypatch.setattr(campaign, "run_step", lambda cmd, log, stdout=None, tree=None: (
        fake_compare(calls) if "compare" in cmd else _fake_eval(-90.0, evals))(cmd, log, stdout))
    monkeypatch.setattr(campaign, "probe", _fake_probe(probes))
    for row in (tiny(), parzen, mmd):  # nothing changed since: each result is read as it is
        assert campaign.run_row(row, runs)["commit"] == measured
    assert not calls and not evals
    head = _change(repo, "a = 1  # a refactor\n")
    (repo / "notes.txt").write_text("uncommitted\n")  # dirty: a confirmation is refused, the row stays stale
    assert campaign.run_row(tiny(), runs)["commit"] == measured and not evals
    assert "[tiny] stale (changed since: vaelab/training/loop.py) and left so: the working tree" in capsys.readouterr().out
    (repo / "notes.txt").unlink()
    assert campaign.run_row(tiny(), runs)["confirmed"]["commit"] == head and len(evals) == 1
    # the comparison runs again once, for both rows that read it; the earlier output is kept
    assert campaign.run_row(parzen, runs)["commit"] == head and len(calls) == 1
    assert campaign.run_row(mmd, runs)["commit"] == head and len(calls) == 1
    assert (runs / "superseded" / f"aae-vs-vae-{measured[:7]}" / "results.json").is_file()
    assert json.loads((out / "campaign.json").read_text())["commit"] == head
    said = capsys.readouterr().out
    assert "its comparison runs again at " + head[:7] in said and f"measured again at {head[:7]} (it was" in said


@pytest.mark.parametrize("moved", [False, True])
def test_a_stale_trained_comparison_is_probed_before_it_is_measured_again(tmp_path, monkeypatch, capsys, moved):
    repo, runs, measured = _measured(tmp_path)
    monkeypatch.setattr(campaign, "REPO", repo)
    monkeypatch.setattr(campaign, "relevant_paths", lambda row: ["vaelab/training/"])
    row = compare_row("vc", trains=True)
    (runs / "vc" / "run").mkdir(parents=True)
    (runs / "vc" / "run" / "run.json").write_text("{}")
    (runs / "vc" / "result.json").write_text(json.dumps({**_result(row, commit=measured, dirty=False),
                                                         "command": TRAIN}))
    head = _change(repo, "a = 1  # a refactor\n")
    calls, probes = [], []
    compare = fake_compare(calls)
    monkeypatch.setattr(campaign, "run_step", lambda cmd, log, stdout=None: compare(cmd, log) if "compare" in cmd
                        else {"command": " ".join(cmd), "rc": 0, "wall": 0.1, "cpu": 0.1, "finished": "now"})
    monkeypatch.setattr(campaign, "train_row", lambda row, rd: None)
    monkeypatch.setattr(campaign, "probe", _fake_probe(probes, moved=moved))
    result = campaign.run_row(row, runs)
    assert [(p[1], p[3]) for p in probes] == [(measured, TRAIN), (head, TRAIN)]
    if moved:  # the training code moves the weights: the figure stays stale, the comparison is not run
        assert result["commit"] == measured and not calls
        assert "the training code moved" in capsys.readouterr().out
    else:
        assert result["commit"] == head and len(calls) == 1


def test_a_measured_row_outlives_its_run_directory_until_it_is_run_again(tmp_path, monkeypatch, capsys):
    """The kept copy (RUNS/results/ROW.json here, benchmarks/results/ for the default runs) is
    the figure once the run directory is gone: not run again, shown in the table, and a row that
    reads the lost run says how to bring it back; --rerun trains it again and replaces it."""
    calls = []
    monkeypatch.setattr(campaign, "run_step", fake_compare(calls))
    runs = tmp_path / "runs"
    row = compare_row()
    first = campaign.run_row(row, runs)
    kept = runs / "results" / "parzen.json"
    assert json.loads(kept.read_text()) == first == json.loads((runs / "parzen" / "result.json").read_text())
    assert campaign.results_dir(campaign.DEFAULT_RUNS) == REPO / "benchmarks" / "results"
    for lost in (runs / "parzen", runs / "compare"):
        subprocess.run(["rm", "-r", str(lost)], check=True)
    assert campaign.run_row(row, runs) == first and len(calls) == 1  # done: nothing runs
    assert campaign.status_lines([row], runs)[0].split()[1] == "done"
    page = table.render([row], runs, tmp_path / "docs")
    assert "**146.20 nats**" in page and "--rerun parzen --only parzen" in page
    reader = dataclasses.replace(compare_row("reader"), compare=campaign.Compare(
        "secret-code", ("--lm-run", "{row:parzen}"), pick=RESULTS_PICK))
    assert campaign.run_row(reader, runs) is None
    assert "not on this machine (its figure is kept; train it again: --rerun parzen)" in capsys.readouterr().out
    # --rerun: the row reads as in progress (the kept figure stays meanwhile), then measures again.
    assert campaign.main(["--runs", str(runs), "--rerun", "parzen", "--status"], [row]) == 0
    assert campaign.saved_result(runs, "parzen") is None and kept.exists()
    assert campaign.status_lines([row], runs)[0].split()[1] == "again"
    assert "**146.20 nats** (test, n = 100; not reached); being measured again" in table.render([row], runs, tmp_path)
    again = campaign.run_row(row, runs)
    assert len(calls) == 2 and json.loads(kept.read_text()) == again
    campaign.rerun(runs, "parzen")  # a row whose directory is here: its result is moved aside, not lost
    assert [p.name.split("-")[0] for p in (runs / "parzen").glob("result*.json")] == ["result.before"]


def test_the_campaign_lowers_its_scheduling_group_where_there_is_one(tmp_path):
    group = tmp_path / "autogroup"
    group.write_text("/autogroup-1 nice 0\n")
    assert not campaign.yield_to_foreground(group, own_session=False)  # a terminal's group: left alone
    assert group.read_text() == "/autogroup-1 nice 0\n"
    assert campaign.yield_to_foreground(group, nice=19, own_session=True) and group.read_text() == "19\n"
    assert not campaign.yield_to_foreground(tmp_path / "none" / "autogroup", own_session=True)  # no groups
    if os.getsid(0) != os.getpid():  # this test process leads no session: its group is left alone
        assert not campaign.yield_to_foreground(group)
