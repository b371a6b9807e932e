"""Where openchamber's settings come from: flags, then the environment, then a TOML file.

`resolve(args)` gives `Settings`: every value together with where it came from, so
`openchamber config` can explain itself and errors can name the culprit. The file is
`config.toml` in the platform's config directory (`OPENCHAMBER_CONFIG` overrides it), e.g.::

    opencode = "http://127.0.0.1:4096"
    directory = "~/src/project"
    port = 4096
    password = "…"   # better: OPENCODE_SERVER_PASSWORD

To add a setting: a field on `Settings` and a `Spec` in `SPECS`.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Generic, TypeVar

import platformdirs

from openchamber.client import server_url

T = TypeVar("T")

CONFIG_ENV = "OPENCHAMBER_CONFIG"
DEFAULT = "default"


class ConfigError(Exception):
    """A setting with a value that cannot be used; the message names where it came from."""


@dataclass(frozen=True)
class Setting(Generic[T]):
    value: T
    source: str  # "--flag", "ENV_NAME", "config file PATH" or "default"


@dataclass(frozen=True)
class Settings:
    opencode: Setting[str | None]
    directory: Setting[Path | None]
    host: Setting[str]
    port: Setting[int | None]
    username: Setting[str]
    password: Setting[str | None]
    config_file: Setting[Path]

    @property
    def auth(self) -> tuple[str, str] | None:
        if self.password.value is None:
            return None
        return (self.username.value, self.password.value)

    def with_password(self, password: str, source: str) -> Settings:
        return replace(self, password=Setting(password, source))

    def rows(self) -> list[tuple[str, str, str]]:
        """(name, value as shown, source) for each setting; secrets show only set/unset."""
        rows = []
        for spec in SPECS:
            setting: Setting[Any] = getattr(self, spec.name)
            if spec.secret:
                shown = "set" if setting.value else "unset"
            else:
                shown = "" if setting.value is None else str(setting.value)
            rows.append((spec.name, shown, setting.source))
        rows.append(("config file", str(self.config_file.value), self.config_file.source))
        return rows


def _url(value: object) -> str:
    return server_url(_text(value))


def _directory(value: object) -> Path:
    path = Path(_text(value)).expanduser()
    if not path.is_dir():
        raise ValueError(f"no such directory: {path}")
    return path.resolve()


def _port(value: object) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
        raise ValueError(f"not a port number: {value!r} (expected 1–65535)")
    return value


def _text(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a non-empty string, got {value!r}")
    return value.strip()


@dataclass(frozen=True)
class Spec:
    """One setting: its `Settings` field (also its TOML key), flag, variables, parser."""

    name: str
    parse: Callable[[object], Any]
    flag: str | None = None  # the argparse dest; None: never a flag (secrets)
    env: tuple[str, ...] = ()
    default: Any = None
    secret: bool = False


SPECS = (
    Spec("opencode", _url, "opencode", ("OPENCHAMBER_OPENCODE_URL",)),
    Spec("directory", _directory, "directory", ("OPENCHAMBER_DIRECTORY",)),
    Spec("host", _text, "host", ("OPENCHAMBER_HOST",), "127.0.0.1"),
    Spec("port", _port, "port", ("OPENCHAMBER_PORT",)),
    Spec("username", _text, None, ("OPENCODE_SERVER_USERNAME",), "opencode"),
    Spec("password", _text, None, ("OPENCODE_SERVER_PASSWORD",), secret=True),
)


def config_path(env: Mapping[str, str]) -> Setting[Path]:
    explicit = env.get(CONFIG_ENV)
    if explicit:
        return Setting(Path(explicit).expanduser(), CONFIG_ENV)
    return Setting(Path(platformdirs.user_config_dir("openchamber")) / "config.toml", DEFAULT)


def read_config(path: Setting[Path]) -> dict[str, Any]:
    """The file's table; {} when the default file does not exist (a named one must)."""
    try:
        with path.value.open("rb") as file:
            table = tomllib.load(file)
    except FileNotFoundError:
        if path.source == DEFAULT:
            return {}
        raise ConfigError(f"config file {path.value} (from {CONFIG_ENV}) does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path.value}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path.value} is not valid TOML: {exc}") from exc
    unknown = sorted(set(table) - {spec.name for spec in SPECS})
    if unknown:
        known = ", ".join(spec.name for spec in SPECS)
        raise ConfigError(
            f"config file {path.value}: unknown setting {unknown[0]!r} (known: {known})"
        )
    return table


def resolve(
    args: argparse.Namespace | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Each setting from its flag in `args`, else the environment, else the config file."""
    env = os.environ if env is None else env
    path = config_path(env)
    table = read_config(path)
    values: dict[str, Setting[Any]] = {}
    for spec in SPECS:
        values[spec.name] = _resolve_one(spec, args, env, table, path.value)
    return Settings(**values, config_file=path)


def _resolve_one(
    spec: Spec,
    args: argparse.Namespace | None,
    env: Mapping[str, str],
    table: Mapping[str, Any],
    path: Path,
) -> Setting[Any]:
    candidates: list[tuple[object, str]] = []
    if spec.flag is not None and args is not None:
        candidates.append((getattr(args, spec.flag, None), f"--{spec.flag}"))
    candidates += [(env.get(name) or None, name) for name in spec.env]
    candidates.append((table.get(spec.name), f"config file {path}"))
    for raw, source in candidates:
        if raw is None:
            continue
        try:
            return Setting(spec.parse(raw), source)
        except ValueError as exc:
            raise ConfigError(f"{source}: {exc}") from exc
    return Setting(spec.default, DEFAULT)
