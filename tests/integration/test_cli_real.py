"""`openchamber doctor` against real servers: healthy, wrong password, dead port."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from openchamber.server import OpenCodeServer, free_port

pytestmark = pytest.mark.integration


def doctor(url: str, password: str | None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "COLUMNS": "200"}
    if password is not None:
        env["OPENCODE_SERVER_PASSWORD"] = password
    return subprocess.run(
        [sys.executable, "-m", "openchamber", "doctor", "--opencode", url, "--seconds", "1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_doctor_passes_on_a_healthy_server(opencode: OpenCodeServer) -> None:
    # 1.0.x reports its version only on sessions, so make sure there is one.
    httpx.post(f"{opencode.url}/session", json={}, auth=opencode.auth).raise_for_status()
    result = doctor(opencode.url, opencode.password)
    assert result.returncode == 0, result.stdout + result.stderr
    assert opencode.version in result.stdout
    assert "All checks passed." in result.stdout


def test_doctor_names_a_wrong_password(opencode: OpenCodeServer) -> None:
    result = doctor(opencode.url, "wrong")
    assert "Traceback" not in result.stderr
    if opencode.version.startswith("1.0."):
        # 1.0.x has no authentication: any password is accepted.
        assert result.returncode == 0, result.stdout
        return
    assert result.returncode == 1
    assert "password refused" in result.stdout


def test_doctor_names_a_dead_port() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = doctor(url, None)
    assert result.returncode == 1
    assert f"cannot connect to {url}" in result.stdout
    assert "Traceback" not in result.stderr
