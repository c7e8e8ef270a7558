"""proxpipe as users get it, for the end-to-end tests that run the installed command: a real wheel of the checkout,
installed into fresh virtual environments outside the repository (one module builds it once)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.labproject import REPO


def run(argv, cwd, env=None, timeout=600):
    return subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


# What a checkout holds besides its sources: never in a wheel.
NOT_SOURCES = shutil.ignore_patterns(".git", ".venv", ".tools", ".pipeline", "build", "dist", "*.egg-info",
                                     "__pycache__", ".pytest_cache", ".ruff_cache", ".terraform", "*.tfstate*",
                                     "manifest.json", ".ansible-cache")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a copy of the checkout's sources: setuptools builds in the source tree (build/), where
    another module's build may run at the same time, and where a file removed since an earlier build would stay."""
    dist = tmp_path_factory.mktemp("dist")
    sources = dist / "sources"
    shutil.copytree(REPO, sources, ignore=NOT_SOURCES)
    built = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", dist,
                 sources], cwd=dist)
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
