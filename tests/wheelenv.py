"""proxpipe as users get it, for the end-to-end tests that run the installed command: a real wheel of the checkout,
installed into fresh virtual environments outside the repository (one module builds it once)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.labproject import REPO


def run(argv, cwd, env=None, timeout=600):
    return subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    built = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", dist,
                 REPO], cwd=dist)
    assert built.returncode == 0, built.stdout + built.stderr
    (found,) = dist.glob("proxpipe-*.whl")
    return found


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh virtual environment, outside the repository, with the wheel and its lab extra installed."""
    folder = tmp_path_factory.mktemp("venv") / "venv"
    assert run([sys.executable, "-m", "venv", folder], cwd=folder.parent).returncode == 0
    installed = run([folder / "bin" / "pip", "install", "-q", "--disable-pip-version-check", f"{wheel}[lab]"],
                    cwd=folder.parent, timeout=900)
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    return folder


def environ(venv: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPELINE_", "PROXPIPE_", "VIRTUAL_ENV"))}
    parts = [p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(str(REPO))]
    env.update(PATH=os.pathsep.join([str(venv / "bin"), *parts]), NO_COLOR="1", **extra)
    return env


@pytest.fixture(scope="module")
def bare_venv(wheel, tmp_path_factory) -> Path:
    """A fresh virtual environment with the wheel alone: none of its extras."""
    folder = tmp_path_factory.mktemp("bare") / "venv"
    assert run([sys.executable, "-m", "venv", folder], cwd=folder.parent).returncode == 0
    installed = run([folder / "bin" / "pip", "install", "-q", "--disable-pip-version-check", wheel],
                    cwd=folder.parent, timeout=900)
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    return folder
