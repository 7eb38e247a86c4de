"""The one place model names resolve: CLI, ``vaelab.build``, ``vaelab.load`` and benchmarks."""
from __future__ import annotations

import dataclasses

from ..config import _jsonable
from ..errors import VaelabError

_MODELS: dict[str, type] = {}


def register(name: str):
    """Class decorator: ``@register("vae")`` makes the model buildable and loadable by name."""

    def wrap(cls):
        if name in _MODELS:
            raise ValueError(f"model name {name!r} registered twice")
        cls.name = name
        _MODELS[name] = cls
        return cls

    return wrap


def names() -> tuple[str, ...]:
    return tuple(sorted(_MODELS))


def model_class(name: str) -> type:
    if name not in _MODELS:
        raise VaelabError(f"unknown model '{name}'; choose one of: {', '.join(names())}")
    return _MODELS[name]


def as_trained(model: str | type, config: dict) -> dict:
    """A recorded config with the settings added after it was saved filled in as the run was
    trained, so loading, ``--resume`` and a comparison's reuse of its runs read an old record as
    the same model, not one with today's defaults. A setting is added at the behaviour the family
    had before it, so a missing one reads as its default; one whose default changed since says
    what it was in the Config's ``recorded_before``."""
    cls = model_class(model) if isinstance(model, str) else model  # a name, a model class or its Config
    config_cls = getattr(cls, "Config", cls)
    return {**_defaults(config_cls), **getattr(config_cls, "recorded_before", {}), **config}


def _defaults(config_cls: type) -> dict:
    """Every field's default as ``config.json`` records it (fields without one left out)."""
    if not dataclasses.is_dataclass(config_cls):
        return {}
    out = {}
    for f in dataclasses.fields(config_cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = _jsonable(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = _jsonable(f.default_factory())
    return out


def build(name: str, **settings):
    """Build a registered model from its config settings, e.g. ``build("vae", latent_dim=2)``."""
    cls = model_class(name)
    return cls(cls.Config.from_dict(settings, where=f"{name} config"))
