"""Runs of stages: a model trained on what an earlier one produced (a prior fitted to a
VQ-VAE's codes, M2 on M1's features), each stage a complete run in its own sub-directory.

    RUN/stages.json          the plan: each stage's name, model, settings and directory
    RUN/1-NAME/...           stage 1's run directory (run.json, checkpoints, metrics, weights)
    RUN/2-NAME/...           stage 2's, trained on data derived from stage 1's model

Every stage is trained by the same trainer, so every guarantee of a run holds for each.
``--resume`` passes over the finished stages (their weights are loaded, nothing is
retrained), continues the one that was running and starts the rest. ``vaelab.load(RUN)``
returns the composite model (:func:`vaelab.io.load`).
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import VaelabError
from ..files import atomic_write_json, read_json
from ..io import STAGES_FILE
from ..models.pipeline import Stage

PLAN_FORMAT = 1


def stage_dir(out: Path, index: int, stage: Stage) -> Path:
    return out / f"{index + 1}-{stage.name}"


def _plan(stages: list[Stage], composite: str | None) -> dict:
    return {"format_version": PLAN_FORMAT, "composite": composite,
            "stages": [{"name": s.name, "model": s.model, "dir": f"{i + 1}-{s.name}",
                        "config": s.model_config, "train": s.train_config} for i, s in enumerate(stages)]}


def _check_plan(out: Path, plan: dict, resume: bool) -> None:
    """A new staged run writes its plan; a resumed one must follow the plan it started with."""
    path = out / STAGES_FILE
    if not path.exists():
        if (out / "run.json").exists():
            raise VaelabError(f"{out} holds a single-model run, not a run of stages; choose another --out")
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, plan)
        return
    if not resume:
        raise VaelabError(f"{out} already holds a run of stages; pass --resume to continue it, or choose another --out")
    recorded = read_json(path, "stage plan")
    old, new = recorded.get("stages"), plan["stages"]
    if not isinstance(old, list) or [s.get("name") for s in old if isinstance(s, dict)] != [s["name"] for s in new]:
        raise VaelabError(f"--resume: {out} was started with other stages ({path}); resume with the same "
                          "model or choose another --out")
    for before, now in zip(old, new):
        if before != now:
            raise VaelabError(f"--resume: stage '{now['name']}' of {out} was started with other settings "
                              f"({_stage_differences(before, now)}); every later stage depends on it: "
                              "resume with the same settings or choose another --out")


def _stage_differences(before: dict, now: dict) -> str:
    """``latent_dim 50, now 20; lr 0.0003, now 0.001``: the settings that differ, not two dicts."""
    from .rundir import differences

    parts = [differences(before.get(k) or {}, now.get(k) or {}) for k in ("config", "train")
             if isinstance(before.get(k) or {}, dict) and isinstance(now.get(k) or {}, dict)]
    rest = differences({k: v for k, v in before.items() if k not in ("config", "train")},
                       {k: v for k, v in now.items() if k not in ("config", "train")})
    return "; ".join(p for p in (rest, *parts) if p) or "its settings differ"


def _check_not_orphaned(out: Path, stages: list[Stage], i: int) -> None:
    """A later stage was trained on what stage ``i`` produced: if stage ``i`` has no run any
    more, retraining it would leave that later stage resting on another model."""
    if (stage_dir(out, i, stages[i]) / "run.json").exists():
        return
    later = [s for j, s in enumerate(stages) if j > i and (stage_dir(out, j, s) / "run.json").exists()]
    if later:
        raise VaelabError(f"stage '{later[0].name}' in {out} was trained on stage '{stages[i].name}', whose run "
                          f"{stage_dir(out, i, stages[i])} is missing; restore it, or remove "
                          f"{stage_dir(out, i + 1, stages[i + 1])} and later stages to train them again")


def train_stages(stages: list[Stage], data, out: str | os.PathLike, *, composite: str | None = None,
                 data_dir: str | os.PathLike | None = None, resume: bool = False, progress: bool = True) -> dict:
    """Train ``stages`` in order into ``out``; returns each stage's TrainResult by name."""
    from ..data import load_dataset
    from .run import train

    if not stages or len({s.name for s in stages}) != len(stages):
        raise VaelabError("a run of stages needs at least one stage and distinct stage names")
    out = Path(out)
    _check_plan(out, _plan(stages, composite), resume)
    ds = load_dataset(data, "train", data_dir=data_dir) if isinstance(data, str) else data
    models, results = {}, {}
    for i, stage in enumerate(stages):
        directory = stage_dir(out, i, stage)
        _check_not_orphaned(out, stages, i)
        directory.mkdir(parents=True, exist_ok=True)
        stage_data = ds if stage.data is None else stage.data(models, ds, directory)
        if progress:
            print(f"stage {i + 1}/{len(stages)}: {stage.name} ({stage.model}) in {directory}", flush=True)
        result = train(stage.model, stage_data, directory, model_config=dict(stage.model_config),
                       config=dict(stage.train_config), resume=resume, progress=progress)
        models[stage.name], results[stage.name] = result.model, result
    return results
