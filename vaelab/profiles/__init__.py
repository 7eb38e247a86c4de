"""Named settings files shipped with vaelab: ``vaelab/profiles/FAMILY/NAME.toml``.

Every model family has ``quick`` (a first look in minutes on a 2-core CPU) and ``paper`` (its
paper's protocol as far as the family's options express it; the file's comments name the paper
and where each number comes from). A profile is a ``--config`` file that ships with the package:
the same keys (the option names), read by the same code, so a stale key is refused as in a user's
file. Its first line, a comment, is the one-line description ``--help`` shows.

Precedence, lowest first: the family's defaults, the profile, a ``--config`` file, the options
given. ``vaelab train vae --profile paper --epochs 10`` runs the paper's settings for 10 epochs.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import VaelabError

ROOT = Path(__file__).resolve().parent


def families() -> tuple[str, ...]:
    """Every model family (``vaelab train`` and, for ``vq-prior``, ``vaelab train-prior``)."""
    from ..models import names

    return names()


def profile_names(family: str) -> tuple[str, ...]:
    """The profiles of ``family``, sorted (an unknown family is refused in one line)."""
    from ..models import model_class

    model_class(family)
    return tuple(sorted(p.stem for p in (ROOT / family).glob("*.toml")))


def profile_path(family: str, name: str) -> Path:
    """The file of profile ``name`` of ``family``; an unknown name is refused naming the family's."""
    known = profile_names(family)
    if name not in known:
        raise VaelabError(f"model '{family}' has no profile '{name}'; its profiles: {', '.join(known) or 'none'} "
                          f"(vaelab profiles {family} shows what each sets)")
    return ROOT / family / f"{name}.toml"


def describe(family: str, name: str) -> str:
    """The profile's one-line description: the first line of its file, a comment."""
    first = (ROOT / family / f"{name}.toml").read_text(encoding="utf-8").split("\n", 1)[0]
    return first.lstrip("#").strip()


def read_profile(family: str, name: str) -> dict:
    """The settings of profile ``name`` of ``family``, keyed by config field (``latent_dim``),
    model and training settings together, read as ``vaelab train --config FILE`` reads a file."""
    from ..models import model_class
    from ..options import file_settings, options
    from ..training import TrainConfig

    path = profile_path(family, name)
    return file_settings(str(path), options(model_class(family).Config) + options(TrainConfig))


def profile_settings(family: str, name: str) -> tuple[dict, dict]:
    """(model settings, training settings) of a profile, for :func:`vaelab.train`; the training
    settings carry ``profile=name`` so that ``run.json`` records it:

        model_config, config = profile_settings("vae", "quick")
        vaelab.train("vae", "mnist", "runs/vae", model_config=model_config, config={**config, "epochs": 1})
    """
    from ..models import model_class
    from ..options import options

    settings = read_profile(family, name)
    model_keys = {o.key for o in options(model_class(family).Config)}
    model = {k: v for k, v in settings.items() if k in model_keys}
    train = {k: v for k, v in settings.items() if k not in model_keys}
    return model, {**train, "profile": name}


def listing(family: str | None = None) -> str:
    """What ``vaelab profiles [FAMILY]`` prints: every family and its profiles, or each profile
    of ``family`` with its description and every setting it sets, as options."""
    if family is None:
        width = max(map(len, families()))
        rows = [f"{f:<{width}}  {', '.join(profile_names(f))}" for f in families()]
        return "\n".join(["profiles of each family (vaelab profiles FAMILY shows their settings):", *rows])
    lines = [f"profiles of {family} ({_command(family)} --profile NAME; files in {ROOT / family}):"]
    for name in profile_names(family):
        lines += ["", f"{name}: {describe(family, name)}"]
        lines += [f"  {option}" for option in _as_options(family, read_profile(family, name))] or \
            ["  (sets nothing: the family's defaults)"]
    return "\n".join(lines)


def epilog(family: str) -> str:
    """The profiles paragraph of ``vaelab train FAMILY --help``."""
    names = profile_names(family)
    width = max(map(len, names), default=0)
    rows = [f"  {n:<{width}}  {describe(family, n)}" for n in names]
    return "\n".join([f"profiles (--profile NAME; vaelab profiles {family} shows every setting):", *rows])


def _command(family: str) -> str:
    return "vaelab train-prior RUN" if family == "vq-prior" else f"vaelab train {family}"


def _as_options(family: str, settings: dict) -> list[str]:
    """``{"latent_dim": 50, "tied": False}`` -> ``["--latent-dim 50", "--no-tied"]``, in option order."""
    from ..models import model_class
    from ..options import options, shown
    from ..training import TrainConfig

    words = []
    for opt in options(model_class(family).Config) + options(TrainConfig):
        if opt.key not in settings:
            continue
        value = settings[opt.key]
        if opt.kind is bool:
            words.append(opt.flag if value else "--no-" + opt.name)
        else:
            words.append(f"{opt.flag} {shown(tuple(value) if isinstance(value, list) else value)}")
    return words


def markdown_table() -> str:
    """docs/models.md's table of every family's profiles and what each sets (a test keeps the
    docs equal to it: ``python -c "from vaelab.profiles import markdown_table as t; print(t())"``)."""
    rows = ["| family | profile | what it is | what it sets |", "|---|---|---|---|"]
    for family in families():
        for name in profile_names(family):
            options = " ".join(_as_options(family, read_profile(family, name)))
            rows.append(f"| `{family}` | `{name}` | {describe(family, name)} | "
                        f"{f'`{options}`' if options else 'nothing: the defaults'} |")
    return "\n".join(rows)
