"""Without the shared data directory, only tests that need real data skip: a pytest run in a
subprocess, with the suite's data directory pointed at an empty one (VAELAB_TEST_SHARED_DATA,
read by conftest.py), over tests that must not need it, skips none of them."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Tests that check estimators, objectives and options on synthetic data with known answers,
# and command-line tests on synthetic digits.
NO_DATA_NEEDED = [
    "tests/test_evaluate.py::test_importance_sampled_ll_tightens_to_the_closed_form_log_likelihood",
    "tests/test_evaluate.py::test_estimator_is_exact_when_the_posterior_is_the_prior",
    "tests/test_evaluate.py::test_estimator_converges_to_the_true_likelihood",
    "tests/test_evaluate.py::test_chunking_does_not_change_the_estimate",
    "tests/test_evaluate.py::test_estimate_does_not_depend_on_threads_or_chunking",
    "tests/test_evaluate.py::test_k_must_be_positive",
    "tests/test_ssvae.py::test_beta_and_the_kl_warmup_weigh_the_kl_of_neg_L",
    "tests/test_ssvae.py::test_the_semi_supervised_models_train_on_grey_levels_by_default",
    "tests/test_ssvae.py::test_glorot_initialises_the_classifier_too",
    # command-line tests that need labelled 28×28 images, given as synthetic user data (npy:)
    "tests/test_cli.py::test_negative_nll_samples_is_refused",
    "tests/test_latent_map.py::test_cli_scatter_maps_the_test_split",
]


def test_tests_that_need_no_real_data_run_without_it(tmp_path):
    empty = tmp_path / "no-shared-data"
    empty.mkdir()
    env = {**os.environ, "VAELAB_TEST_SHARED_DATA": str(empty),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:randomly", "-p", "no:cacheprovider",
                           "-W", "ignore", *NO_DATA_NEEDED], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    summary = done.stdout.strip().splitlines()[-1]
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "skipped" not in summary, done.stdout[-3000:]
    assert int(re.search(r"(\d+) passed", summary).group(1)) >= len(NO_DATA_NEEDED)


def test_the_suite_finds_its_data_where_it_is_told(tmp_path):
    """The override is honoured, so the check above really runs without data."""
    env = {**os.environ, "VAELAB_TEST_SHARED_DATA": str(tmp_path),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", "import conftest; print(conftest.SHARED_DATA)"],
                          cwd=ROOT / "tests", env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()) == tmp_path
