"""Settings precedence: flags over environment over the config file over defaults."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from openchamber.config import ConfigError, resolve


def _args(**flags: object) -> argparse.Namespace:
    return argparse.Namespace(**flags)


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    project = tmp_path / "from-file"
    project.mkdir()
    path.write_text(
        f'opencode = "http://file:1000"\ndirectory = "{project}"\nport = 4100\n'
        'host = "0.0.0.0"\nusername = "filer"\npassword = "file-secret"\n'
    )
    return path


def test_defaults_without_anything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))  # no config file there
    settings = resolve(_args(), {})
    assert settings.opencode.value is None
    assert settings.host.value == "127.0.0.1"
    assert settings.host.source == "default"
    assert settings.port.value is None
    assert settings.username.value == "opencode"
    assert settings.auth is None


def test_config_file_is_used_when_nothing_else_says(config_file: Path) -> None:
    settings = resolve(_args(), {"OPENCHAMBER_CONFIG": str(config_file)})
    assert settings.opencode.value == "http://file:1000"
    assert settings.port.value == 4100
    assert settings.directory.value == (config_file.parent / "from-file").resolve()
    assert settings.auth == ("filer", "file-secret")
    assert settings.port.source == f"config file {config_file}"
    assert settings.config_file.source == "OPENCHAMBER_CONFIG"


def test_environment_beats_the_config_file(config_file: Path, tmp_path: Path) -> None:
    env = {
        "OPENCHAMBER_CONFIG": str(config_file),
        "OPENCHAMBER_OPENCODE_URL": "http://env:2000",
        "OPENCHAMBER_DIRECTORY": str(tmp_path),
        "OPENCHAMBER_PORT": "4200",
        "OPENCHAMBER_HOST": "::1",
        "OPENCODE_SERVER_USERNAME": "envy",
        "OPENCODE_SERVER_PASSWORD": "env-secret",
    }
    settings = resolve(_args(), env)
    assert settings.opencode.value == "http://env:2000"
    assert settings.opencode.source == "OPENCHAMBER_OPENCODE_URL"
    assert settings.directory.value == tmp_path.resolve()
    assert settings.port.value == 4200
    assert settings.host.value == "::1"
    assert settings.auth == ("envy", "env-secret")
    assert settings.password.source == "OPENCODE_SERVER_PASSWORD"


def test_flags_beat_the_environment(config_file: Path, tmp_path: Path) -> None:
    env = {
        "OPENCHAMBER_CONFIG": str(config_file),
        "OPENCHAMBER_OPENCODE_URL": "http://env:2000",
        "OPENCHAMBER_PORT": "4200",
    }
    flags = _args(opencode="http://flag:3000/", port="4300", directory=str(tmp_path))
    settings = resolve(flags, env)
    assert settings.opencode.value == "http://flag:3000"
    assert settings.opencode.source == "--opencode"
    assert settings.port.value == 4300
    assert settings.port.source == "--port"
    assert settings.directory.source == "--directory"


def test_empty_environment_values_count_as_unset(config_file: Path) -> None:
    env = {"OPENCHAMBER_CONFIG": str(config_file), "OPENCHAMBER_PORT": ""}
    assert resolve(_args(), env).port.value == 4100


def test_rows_never_show_the_password(config_file: Path) -> None:
    rows = resolve(_args(), {"OPENCHAMBER_CONFIG": str(config_file)}).rows()
    assert ("password", "set", f"config file {config_file}") in rows
    assert all("file-secret" not in cell for row in rows for cell in row)


@pytest.mark.parametrize(
    ("content", "env", "flags", "message"),
    [
        ("port = [", {}, {}, "is not valid TOML"),
        ("colour = 1", {}, {}, "unknown setting 'colour'"),
        ('port = "many"', {}, {}, "not a port number"),
        ("", {"OPENCHAMBER_PORT": "70000"}, {}, "OPENCHAMBER_PORT: not a port number"),
        ("", {}, {"opencode": "localhost:4096"}, "--opencode: not a valid server URL"),
        ("", {}, {"directory": "/no/such/dir"}, "--directory: no such directory"),
    ],
)
def test_bad_values_name_their_source(
    tmp_path: Path, content: str, env: dict[str, str], flags: dict[str, str], message: str
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        resolve(_args(**flags), {"OPENCHAMBER_CONFIG": str(path), **env})


def test_a_named_config_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        resolve(_args(), {"OPENCHAMBER_CONFIG": str(tmp_path / "missing.toml")})


def test_the_default_config_file_lives_in_the_platform_config_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    (tmp_path / "openchamber").mkdir()
    (tmp_path / "openchamber" / "config.toml").write_text("port = 4500\n")
    settings = resolve(_args(), {})
    assert settings.port.value == 4500
    assert settings.config_file.value == tmp_path / "openchamber" / "config.toml"
