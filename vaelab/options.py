"""Command-line options generated from config dataclass fields, so that a new model family
declares its options where it declares its settings and never edits the CLI.

A field is an option unless its metadata says ``{"option": False}`` (``input_shape``,
which comes from the data). Its metadata carries the help (``{"help": ...}``, required)
and, where the field name does not suit, a ``flag`` (``"--kl-warmup"``) or ``metavar``.
Type, default and parsing follow the field's annotation: int, float, str; bool as
``--x/--no-x``; ``tuple[int, ...]`` as a comma list (``none`` = empty); a fixed-length
tuple such as ``tuple[float, float]`` as exactly that many comma-separated values.
"""
from __future__ import annotations

import argparse
import dataclasses
import re
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable

METAVARS = {int: "N", float: "X", str: "NAME"}
PLURALS = {int: "integers", float: "numbers", str: "names"}


@dataclass(frozen=True)
class Option:
    """One config field as a command-line option."""

    key: str  # the field name, also the argparse dest and the run.json key
    flag: str
    kind: Any  # the field's type annotation
    help: str
    default: Any
    metavar: str | None = None
    default_text: str | None = None  # the help's words for a default that depends on the data

    @property
    def name(self) -> str:
        """The flag without its dashes: what a settings file may use as the key."""
        return self.flag[2:]


def options(config_cls: type) -> list[Option]:
    """The options of a config dataclass, in field order. A field without help is a
    mistake of the config's author, caught when any parser is built (and by the tests)."""
    hints = typing.get_type_hints(config_cls)
    found = []
    for f in dataclasses.fields(config_cls):
        meta = _metadata(config_cls, f.name)
        if meta.get("option", True) is False:
            continue
        if not meta.get("help"):
            raise TypeError(f"{config_cls.__name__}.{f.name} has no help: declare it with "
                            "field(metadata={'help': ...}), or mark it {'option': False}")
        default = f.default
        if default is dataclasses.MISSING:
            default = None if f.default_factory is dataclasses.MISSING else f.default_factory()
        found.append(Option(f.name, meta.get("flag", "--" + f.name.replace("_", "-")), hints[f.name],
                            meta["help"], default, meta.get("metavar"), meta.get("default_text")))
    return found


def _metadata(config_cls: type, name: str) -> dict:
    """A field's metadata, inherited: a subclass that only changes a default
    (``hidden: tuple[int, ...] = ()``) keeps its base's help and flag."""
    merged: dict = {}
    for base in reversed(config_cls.__mro__):
        if dataclasses.is_dataclass(base):
            merged.update(next((f.metadata for f in dataclasses.fields(base) if f.name == name), {}))
    return merged


def shown(value: Any) -> str:
    """A default as a user would type it: ``400,200``, ``none``, ``true``."""
    if isinstance(value, tuple):
        return ",".join(map(str, value)) if value else "none"
    return str(value).lower() if isinstance(value, bool) else str(value)


def add_options(group, opts: list[Option], defaults: dict | None = None) -> None:
    """Add ``opts`` to an argparse parser or group. Every option defaults to None, so that
    what was given can be told from what was not; the help shows the real default
    (``defaults`` first: a model family's own training defaults)."""
    defaults = defaults or {}
    for opt in opts:
        default = opt.default_text if opt.default_text and opt.key not in defaults else \
            shown(defaults.get(opt.key, opt.default))
        text = f"{opt.help} (default: {default})".replace("%", "%%")
        if opt.kind is bool:
            group.add_argument(opt.flag, dest=opt.key, action=argparse.BooleanOptionalAction, default=None,
                               help=text)
        else:
            parse, metavar = parser_for(opt.kind, opt.key)
            group.add_argument(opt.flag, dest=opt.key, type=parse, default=None, metavar=opt.metavar or metavar,
                               help=text)


def parser_for(kind: Any, key: str = "?") -> tuple[Callable[[str], Any], str]:
    """The argparse ``type`` and metavar of a field annotation (``int | None``: a field whose
    default None the config resolves from the data; on the command line, an int)."""
    arms = [a for a in typing.get_args(kind) if a is not type(None)]
    if typing.get_origin(kind) in (typing.Union, types.UnionType) and len(arms) == 1:
        kind = arms[0]
    if kind in METAVARS:
        return kind, METAVARS[kind]
    args = typing.get_args(kind)
    if typing.get_origin(kind) is tuple and args:
        if len(args) == 2 and args[1] is Ellipsis and args[0] in METAVARS:
            return comma_list(args[0]), f"{METAVARS[args[0]]}[,{METAVARS[args[0]]}...]"
        if Ellipsis not in args and all(a in METAVARS for a in args):
            return comma_tuple(args), ",".join(METAVARS[a] for a in args)
    raise TypeError(f"config field '{key}' has type {kind}, which has no command-line form; "
                    "mark it field(metadata={'option': False})")


def comma_list(elem: type) -> Callable[[str], tuple]:
    """``200,200`` -> (200, 200); ``none`` -> () (no layers, e.g. ``--hidden none``)."""

    def parse(text: str) -> tuple:
        if text.strip().lower() == "none":
            return ()
        try:
            return tuple(elem(t.strip()) for t in text.split(",") if t.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {PLURALS[elem]} like "
                                             f"{_example(elem)},{_example(elem)}, got {text!r}") from None

    parse.__name__ = f"comma-separated {PLURALS[elem]}"
    return parse


def comma_tuple(elems: tuple[type, ...]) -> Callable[[str], tuple]:
    """``0.9,0.99`` -> (0.9, 0.99) for ``tuple[float, float]``: exactly that many values."""

    def parse(text: str) -> tuple:
        words = [t.strip() for t in text.split(",")]
        try:
            if len(words) == len(elems):
                return tuple(e(w) for e, w in zip(elems, words))
        except ValueError:
            pass
        example = ",".join(_example(e) for e in elems)
        raise argparse.ArgumentTypeError(f"expected {len(elems)} comma-separated values like {example}, "
                                         f"got {text!r}")

    parse.__name__ = f"{len(elems)} comma-separated values"
    return parse


def _example(elem: type) -> str:
    return {int: "200", float: "0.9"}.get(elem, "name")


def key_spellings(opts: list[Option]) -> dict[str, str]:
    """Every settings-file key -> its field: the option name with dashes or underscores
    (what ``--help`` shows) and the field name (what ``run.json`` records)."""
    spellings = {}
    for opt in opts:
        for spelling in (opt.name, opt.name.replace("-", "_"), opt.key, opt.key.replace("_", "-")):
            spellings[spelling] = opt.key
    return spellings


def valid_keys(opts: list[Option]) -> str:
    """``latent-dim/latent_dim, kl-warmup/kl_warmup (kl_warmup_epochs), lr, ...`` for an error."""
    shown_keys = []
    for opt in sorted(opts, key=lambda o: o.flag):
        text = "/".join(dict.fromkeys((opt.name, opt.name.replace("-", "_"))))
        shown_keys.append(text if opt.name.replace("-", "_") == opt.key else f"{text} ({opt.key})")
    return ", ".join(shown_keys)


def in_option_names(message: str, config_cls: type | None) -> str:
    """A config's validation message as the command line's user reads it: its field names as
    the options that set them (``latent_dim must be positive`` -> ``--latent-dim must be
    positive``). Only unambiguous words change: a field name with an underscore, or one that
    opens a clause (``epochs must ...``), so that ``unknown lr schedule`` or prose stays put."""
    if config_cls is None or not dataclasses.is_dataclass(config_cls):
        return message
    try:
        opts = options(config_cls)
    except TypeError:  # an internal config (a baseline's) has no options
        return message
    for opt in opts:
        word = re.escape(opt.key)
        pattern = rf"(?<![\w-])'?{word}'?(?![\w-])" if "_" in opt.key else rf"(?<![\w-]){word}(?= must\b| sizes\b)"
        message = re.sub(pattern, opt.flag, message)
    return message


def file_settings(path: str, opts: list[Option]) -> dict:
    """The settings in a ``--config`` file (or a packaged profile, read alike), keyed by config field;
    unknown or doubled keys are refused."""
    import difflib

    from .errors import VaelabError
    from .files import read_settings

    raw = read_settings(path, "--config file")
    spellings = key_spellings(opts)
    flags = {o.key: o.flag for o in opts}
    unknown = [k for k in raw if k not in spellings]
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(spellings), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise VaelabError(f"--config {path}: unknown setting(s) {', '.join(sorted(unknown))}{hint}; valid keys "
                          f"are the option names, with dashes or underscores: {valid_keys(opts)}")
    settings, given_as = {}, {}
    for spelling, value in raw.items():
        key = spellings[spelling]
        if key in settings:
            raise VaelabError(f"--config {path}: '{given_as[key]}' and '{spelling}' both set {flags[key]}; keep one")
        settings[key], given_as[key] = value, spelling
    return settings
