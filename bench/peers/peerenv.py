"""A virtualenv of its own for the peer programs the benchmarks compare counterguard with, so the
product's environment never carries them. Created on first use from the same package index pip
uses for the product; kept in ``bench/.venv-peers`` (ignored by git) and reused after that.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from machine_info import cpu_name  # noqa: E402

HERE = Path(__file__).resolve().parent
VENV = HERE.parent / ".venv-peers"

# Exact versions, so a rerun measures the same programs.
PEERS = ("mqtt-io==2.7.0", "thingsboard-gateway==3.8.5", "pyserial==3.5", "onnx==1.23.2",
         "onnxruntime==1.32.0", "numpy", "paho-mqtt==2.2.0")


def peers_python() -> Path:
    """The peers venv's interpreter, installing the peers first if they are not there yet."""
    python = VENV / "bin" / "python"
    marker = VENV / "installed.txt"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(VENV)], check=True)
        # No pip of its own: the product venv's pip installs into it (--python), from the same index.
    if not (VENV / ".gitignore").exists():
        (VENV / ".gitignore").write_text("*\n")
    if not marker.exists() or marker.read_text() != "\n".join(PEERS):
        print(f"installing {' '.join(PEERS)} into {VENV} ...", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", *PEERS], check=True)
        marker.write_text("\n".join(PEERS))
    return python


def peer_version(python: Path, dist: str) -> str:
    out = subprocess.run([str(python), "-c", f"import importlib.metadata as m; print(m.version('{dist}'))"],
                         capture_output=True, text=True)
    return out.stdout.strip() or "not installed"


def machine_line() -> str:
    """What the numbers were measured on, for the docs table."""
    return (f"{os.cpu_count()} cores ({cpu_name()}, {platform.machine()}), Linux {platform.release()}, "
            f"Python {platform.python_version()}; {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
