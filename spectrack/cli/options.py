"""The study options every command that runs studies takes, defined once by the fields of
:class:`spectrack.settings.Settings` (:func:`study_options`), and the help texts of the study arguments.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from pathlib import Path
from typing import Optional

import typer

_STUDY_HELP = ("Study folder (DICOM and/or NIfTI), study file, or NIfTI files. A study file in the folder "
               "(spectrack.toml) gives the settings that no option gives.")
_CONFIG_HELP = ("Settings file (TOML/JSON) with the study options' keys (e.g. sensitivity = 30); "
                "options given on the command line override it.")


# ---------------------------------------------------------------- the shared study options

_OPTION_TYPES = {"float": Optional[float], "int": Optional[int], "bool": Optional[bool], "str": Optional[str]}


def _study_option_params(include, exclude) -> list[inspect.Parameter]:
    """One typer option per :class:`~spectrack.settings.Settings` field with CLI help."""
    from ..settings import Settings, option_name

    params = []
    for f in dataclasses.fields(Settings):
        if "help" not in f.metadata or f.name in exclude or (include is not None and f.name not in include):
            continue
        kind = f.type.replace(" | None", "")
        ann = Optional[str] if kind.startswith("list") else _OPTION_TYPES[kind]
        flag = option_name(f.name)
        decls = [f"{flag}/--no-{flag[2:]}"] if kind == "bool" else [flag]
        if f.metadata.get("short"):
            decls.append(f.metadata["short"])
        if f.metadata.get("shown"):
            shown = f.metadata["shown"]
        elif kind == "bool":
            shown = flag[2:] if f.default else f"no-{flag[2:]}"
        else:
            shown = str(f.default)
        help_ = f.metadata["help"]
        if flag[2:] != f.name.replace("_", "-"):
            help_ += f" Settings-file key {flag[2:]} or {f.name}."
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, annotation=ann,
                                        default=typer.Option(None, *decls, help=help_, show_default=shown)))
    return params


def study_options(*, include=None, exclude=()):
    """Add the study options (the :class:`~spectrack.settings.Settings` fields) to a command.

    The command takes a keyword ``options``: the options given on the command
    line, validated into a :class:`StudyOptions`. Use it as the decorator
    below ``@app.command()``.

    Parameters
    ----------
    include : iterable of str, optional
        Only these fields (default: all of them).
    exclude : iterable of str
        Fields that make no sense for the command (``subject`` for a batch).
    """

    def deco(fn):
        extra = _study_option_params(include, exclude)
        names = [p.name for p in extra]
        sig = inspect.signature(fn, eval_str=True)
        own = [p for p in sig.parameters.values() if p.name != "options"]
        ctx = inspect.Parameter("_typer_ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)

        @functools.wraps(fn)
        def command(**kwargs):
            given = {n: kwargs.pop(n) for n in names}
            opts = StudyOptions({k: v for k, v in given.items() if v is not None}, kwargs.pop("_typer_ctx"))
            return fn(**kwargs, options=opts)

        params = own + extra + [ctx]
        command.__signature__ = sig.replace(parameters=params)
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command

    return deco


@dataclasses.dataclass
class StudyOptions:
    """The study options given on the command line (``{field: value}``) and the click context."""

    given: dict
    ctx: object = None

    def settings(self, config: Path | None = None, *, base=None):
        """:class:`~spectrack.settings.Settings`: ``base`` (or the settings file), then the given options.

        A bad option value is a usage error (exit 2) naming the option; a bad
        settings file is an :class:`~spectrack.errors.InputError` (exit 3).
        """
        from ..settings import (Settings, SettingError, option_name, read_settings_file, settings_from_mapping,
                               with_given)

        try:
            cli = settings_from_mapping(self.given, where="options")
        except SettingError as e:
            raise typer.BadParameter(e.problem, ctx=self.ctx, param_hint=f"'{option_name(e.key)}'") from None
        if base is None:
            base = read_settings_file(config) if config else Settings()
        # what is given here (options, settings file) wins over each study's study file
        return with_given(dataclasses.replace(base, **{k: getattr(cli, k) for k in self.given}),
                          base.given | set(self.given))


def _study_arg(study: list[Path]):
    return study[0] if len(study) == 1 else list(study)
