"""One settings object per component, its command-line options generated from it, and TOML config files.

A component's settings are one dataclass (``edge.daemon.EdgeConfig``, ``fog.server.FogConfig``,
``training.mappo.config.MappoArgs``) or one pydantic-settings model (``cloud.core.config.Settings``). Each
default is written once, on the field; :func:`settings_command` turns the fields into the ``typer`` options of
the component's command, so ``--help`` shows those defaults and the command receives a built settings object.

A dataclass field becomes an option when it is declared with :func:`setting` (help text, flag name, bounds);
a pydantic field when it has a ``description`` and is not a secret (secrets come from the environment only).

Every such command also takes ``--config FILE``: a TOML file whose top-level keys are the command's long
option names without the dashes (``replay-speed = 10`` or ``replay_speed = 10``; a switch
``--embed/--no-embed`` is ``embed = false``). Precedence, highest first: a flag on the command line, the
flag's environment variable (where it has one, e.g. ``MARLIDS_CLOUD_URL``), the config file, then the
default on the settings field. An unknown key or a value of the wrong type is a usage error that names the
key and the file. Examples: ``deploy/config/*.toml``.

This module imports only the standard library at import time (runtime dataclasses declare their fields
with :func:`setting`); ``typer`` is imported when a command is built. It lives on the ground floor
(``edge/``) so that every part may import it.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
import tomllib
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: Field-metadata key under which :func:`setting` stores the option's description.
CLI_KEY = "marlids.cli"


def setting(default: Any = dataclasses.MISSING, *, help: str, flag: str | None = None,
            default_factory: Any = dataclasses.MISSING, envvar: str | None = None,
            convert: Callable[[Any], Any] | None = None, cli_type: Any = None, **option_kw: Any) -> Any:
    """A dataclass field that is also a command-line option of its component.

    Parameters
    ----------
    default, default_factory
        The field's default, as in :func:`dataclasses.field` (the only place it is written). Neither:
        a required option.
    help : str
        One line shown by ``--help`` (units in the text: s, bytes, packets).
    flag : str, optional
        The option's declaration, e.g. ``"--window"`` or ``"--embed/--no-embed"`` (default ``--field-name``).
    envvar : str, optional
        Environment variable read when the flag is not given.
    convert : callable, optional
        Applied to the value from the command line or the config file before the settings object is
        built (e.g. ``"site_a,site_b"`` → ``("site_a", "site_b")``); the option then has type ``cli_type``.
    cli_type : type, optional
        The option's type when it differs from the field's (with ``convert``).
    **option_kw
        Passed to ``typer.Option`` (``min``, ``max``, ``dir_okay`` …).

    Returns
    -------
    dataclasses.Field
    """
    meta = {CLI_KEY: {"help": help, "flag": flag, "envvar": envvar, "convert": convert, "cli_type": cli_type,
                      "kw": option_kw}}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True)
class CliField:
    """One settings field as a command-line option.

    Attributes
    ----------
    name : str
        The field's (and the command parameter's) name.
    decl : str
        Option declaration (``"--buffer-max"``, ``"--embed/--no-embed"``).
    annotation : type
        The option's Python type (typer picks the click type from it).
    default : Any
        The field's default (``dataclasses.MISSING``: required).
    help, envvar, convert, option_kw
        As given to :func:`setting` (or read from the pydantic field).
    env_names : tuple of str
        Environment variables the settings object itself reads for this field (pydantic-settings); a config
        file does not override them.
    """

    name: str
    decl: str
    annotation: Any
    default: Any
    help: str
    envvar: str | None = None
    convert: Callable[[Any], Any] | None = None
    option_kw: dict = dataclasses.field(default_factory=dict)
    env_names: tuple[str, ...] = ()

    @property
    def required(self) -> bool:
        """True when the field has no default."""
        return self.default is dataclasses.MISSING

    @property
    def keys(self) -> tuple[str, ...]:
        """The config-file keys of this option: its long names without dashes (and with underscores)."""
        first = self.decl.split("/")[0].lstrip("-")
        return (first, first.replace("-", "_"))


def _dashed(name: str, annotation: Any = None) -> str:
    flag = "--" + name.rstrip("_").replace("_", "-")
    if annotation is bool or set(typing.get_args(annotation)) == {bool, type(None)}:
        return f"{flag}/--no-{flag[2:]}"  # a switch that can be turned either way (also from a config file)
    return flag


def cli_fields(cls: type, *, flags: dict[str, str] | None = None, exclude: tuple[str, ...] = ()) -> list[CliField]:
    """The fields of a settings class that are command-line options, in declaration order.

    Parameters
    ----------
    cls : type
        A dataclass (fields declared with :func:`setting`) or a pydantic ``BaseModel`` (fields with a
        ``description``; ``SecretStr`` fields are left to the environment).
    flags : dict, optional
        Field name → option declaration, overriding ``--field-name`` (pydantic models).
    exclude : tuple of str
        Field names that are not options of this command.

    Returns
    -------
    list of CliField
    """
    flags = flags or {}
    hints = typing.get_type_hints(cls)
    out: list[CliField] = []
    if dataclasses.is_dataclass(cls):
        for f in dataclasses.fields(cls):
            meta = f.metadata.get(CLI_KEY)
            if meta is None or f.name in exclude:
                continue
            default = (f.default if f.default is not dataclasses.MISSING else
                       f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING)
            out.append(CliField(name=f.name, decl=flags.get(f.name) or meta["flag"] or _dashed(f.name, hints[f.name]),
                                annotation=meta["cli_type"] or hints[f.name], default=default, help=meta["help"],
                                envvar=meta["envvar"], convert=meta["convert"], option_kw=dict(meta["kw"])))
        return out
    from pydantic import AliasChoices, SecretStr

    prefix = (getattr(cls, "model_config", {}) or {}).get("env_prefix", "")
    for name, f in cls.model_fields.items():
        ann = hints[name]
        secret = ann is SecretStr or SecretStr in typing.get_args(ann) or (name.endswith("_key") and not _is_path(ann))
        if name in exclude or not f.description or secret:  # secrets: from the environment only
            continue
        env = {f"{prefix}{name}".upper()}
        if isinstance(f.validation_alias, AliasChoices):
            env |= {c for c in f.validation_alias.choices if isinstance(c, str)}
        elif isinstance(f.validation_alias, str):
            env.add(f.validation_alias)
        default = f.default_factory() if f.default_factory is not None else f.default
        option_kw = {}
        for m in f.metadata:  # annotated_types bounds of Field(ge=…, le=…)
            if getattr(m, "ge", None) is not None:
                option_kw["min"] = m.ge
            if getattr(m, "le", None) is not None:
                option_kw["max"] = m.le
        out.append(CliField(name=name, decl=flags.get(name) or _dashed(name, ann), annotation=ann, default=default,
                            help=f.description, option_kw=option_kw, env_names=tuple(sorted(env))))
    return out


def read_config(path: Path, known: dict[str, str]) -> dict[str, Any]:
    """Read a TOML config file into ``{parameter name: value}``.

    Parameters
    ----------
    path : Path
        The TOML file.
    known : dict
        Config key → command parameter name (every long option name, dashed and underscored).

    Returns
    -------
    dict

    Raises
    ------
    typer.BadParameter
        (A usage error, exit code 2.) The file is missing or not valid TOML, or a key is not an option of the command (the message
        lists the known keys).
    """
    import typer

    try:
        doc = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise typer.BadParameter(f"{path}: no such file", param_hint="--config") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise typer.BadParameter(f"{path}: not valid TOML ({exc})", param_hint="--config") from None
    out, unknown = {}, []
    for key, value in doc.items():
        if key in known:
            out[known[key]] = value
        else:
            unknown.append(key)
    if unknown:
        names = sorted({k for k in known if "_" not in k or k.replace("_", "-") not in known})
        raise typer.BadParameter(f"{path}: unknown key(s) {', '.join(map(repr, unknown))}; this command's keys: "
                                 f"{', '.join(names)}", param_hint="--config")
    return out


def _is_path(annotation: Any) -> bool:
    return annotation is Path or Path in typing.get_args(annotation) or any(
        _is_path(a) for a in typing.get_args(annotation) if a is not type(None))


def settings_command(cls: type, *, param: str = "settings", flags: dict[str, str] | None = None,
                     exclude: tuple[str, ...] = ()) -> Callable:
    """Decorate a typer command so that its options are generated from ``cls`` and it takes ``--config FILE``.

    The decorated function's first parameter (named ``param``) receives the settings object built from the
    options given (on the command line, by environment variable or in the config file); fields not given
    keep the settings class's default (or, for pydantic-settings, its environment variables). The
    function's other parameters stay ordinary typer options, also settable from the config file.

    Parameters
    ----------
    cls : type
        Settings dataclass or pydantic model (:func:`cli_fields`).
    param : str
        Name of the function parameter receiving the settings object.
    flags, exclude
        As :func:`cli_fields`.

    Returns
    -------
    callable
        Decorator.

    Raises
    ------
    typer.BadParameter
        (When the command runs; a usage error, exit code 2.) A required setting is given neither as a flag nor
        in the config file, or a config-file value does not fit its option.
    """

    def deco(fn: Callable) -> Callable:
        import typer

        fields = cli_fields(cls, flags=flags, exclude=exclude)
        sig = inspect.signature(fn, eval_str=True)
        own = [p for name, p in sig.parameters.items() if name != param]
        clash = {p.name for p in own} & {f.name for f in fields}
        if clash:
            raise TypeError(f"{fn.__name__}: parameters {sorted(clash)} are also fields of {cls.__name__}")
        params = []
        for f in fields:
            default = None if f.required else f.default
            help_ = f.help + (" [required]" if f.required else "")
            kw = {"show_default": not f.required and default not in (None, [], ()), **f.option_kw}
            opt = typer.Option(default, *f.decl.split(" "), help=help_, envvar=f.envvar, **kw)
            ann = f.annotation if not f.required else (f.annotation | None)
            params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=opt, annotation=ann))
        params += own
        params.append(inspect.Parameter("typer_ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context))
        params.append(inspect.Parameter(
            "config", inspect.Parameter.KEYWORD_ONLY, annotation=Path | None,
            default=typer.Option(None, "--config", dir_okay=False, is_eager=True, callback=_load_config,
                                 help="TOML file of this command's options (keys: the long option names without "
                                      "'--'); flags and their environment variables override it.")))

        @functools.wraps(fn)
        def wrapper(**kwargs: Any) -> Any:
            ctx = kwargs.pop("typer_ctx")
            kwargs.pop("config", None)
            values = {}
            for f in fields:
                source = ctx.get_parameter_source(f.name)
                source = source.name if source is not None else "DEFAULT"
                if source == "DEFAULT" or (source == "DEFAULT_MAP" and any(e in os.environ for e in f.env_names)):
                    if f.required:
                        flag = f.decl.split("/")[0]
                        raise typer.BadParameter(f"required: give {flag} or '{f.keys[0]}' in a --config file",
                                                 param_hint=f"'{flag}'")
                    continue  # the settings class's default (or its own environment variable) applies
                v = kwargs[f.name]
                values[f.name] = f.convert(v) if f.convert is not None and v is not None else v
            settings = cls(**values)
            return fn(**{param: settings}, **{p.name: kwargs[p.name] for p in own})

        wrapper.__signature__ = sig.replace(parameters=[
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in params])
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        del wrapper.__wrapped__  # typer reads the generated signature, not fn's
        return wrapper

    return deco


def _load_config(ctx: Any, value: Path | None) -> Path | None:
    """Eager ``--config`` callback: the file's values become the command's ``default_map`` (click's mechanism
    for configuration defaults), below the command line and environment variables, above field defaults."""
    if value is None:
        return None
    known = {}
    for p in ctx.command.params:
        if p.name and p.name != "config":
            for decl in p.opts:
                if decl.startswith("--"):
                    known[decl[2:]] = known[decl[2:].replace("-", "_")] = p.name
    ctx.default_map = {**(ctx.default_map or {}), **read_config(value, known)}
    return value
