"""Run the benchmarks and print one report: ``python -m bench [NAME ...] [--json FILE]``.

Every module of this package whose name does not start with ``_`` is a benchmark with
``run() -> dict`` (the numbers) and ``report(numbers) -> str``; with no NAME, all run.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

import bench

PEERS = ["openchamber", "orjson", "httpx", "httpx-sse", "launchdarkly-eventsource"]


def benchmarks() -> list[str]:
    """The benchmark modules' names; each is imported only when it runs."""
    return sorted(m.name for m in pkgutil.iter_modules(bench.__path__) if m.name[0] != "_")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def source() -> str:
    """The commit measured, and whether src/ had uncommitted changes (read-only git)."""
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}  # never write the index
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "diff", "--quiet", "HEAD", "--", "src"], cwd=root, env=env, check=False
        ).returncode
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return commit + (" with uncommitted changes in src/" if dirty else "")


def machine() -> dict[str, Any]:
    versions = {}
    for name in PEERS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu_model(),
        "cores": usable,
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "versions": versions,
        "source": source(),
    }


def header(info: dict[str, Any]) -> str:
    load = info["load_average"]
    versions = ", ".join(f"{name} {version}" for name, version in info["versions"].items())
    return "\n".join(
        [
            f"machine: {info['cpu']}, {info['cores']} cores usable, {info['platform']}",
            f"python: {info['python']}"
            + (f"; load average at start {load[0]:.2f}" if load else ""),
            f"packages: {versions}",
            f"source: {info['source']}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    available = benchmarks()
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help=", ".join(available))
    parser.add_argument("--json", type=Path, help="also write every number to this file")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in available]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(available)}")
    chosen = args.names or list(available)

    info = machine()
    print(header(info), flush=True)
    results: dict[str, Any] = {"machine": info}
    for name in chosen:
        module: ModuleType = importlib.import_module(f"bench.{name}")
        start = time.perf_counter()
        numbers = module.run()
        elapsed = time.perf_counter() - start
        results[name] = {"seconds": elapsed, **numbers}
        print(f"\n== {name} ({elapsed:.0f} s) " + "=" * 60, flush=True)
        print(module.report(numbers), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
