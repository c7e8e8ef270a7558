#!/usr/bin/env python3
"""The architecture's contracts, outside pytest (./doitw lint, .ci/run): import-linter's contracts of pyproject.toml
(the layers import only downward; plugins, the lab and the stage kinds use only what they may; the core never imports
a plugin), checked on the package as the wheel lays it out (stages/, plugins/, templates/ and lab/ are parts of
proxpipe through setuptools' package-dir mapping).

    python scripts/check_layers.py [--keep DIR]
"""

import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def lay_out(root: Path) -> Path:
    """A copy of the proxpipe package under root, laid out as the wheel installs it."""
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    for package in setuptools["packages"]:
        source = REPO / setuptools["package-dir"].get(package, package.replace(".", "/"))
        target = root / package.replace(".", "/")
        target.mkdir(parents=True, exist_ok=True)
        for module in source.glob("*.py"):
            shutil.copy(module, target / module.name)
    return root


def check(root: Path) -> subprocess.CompletedProcess:
    lint = Path(sys.executable).parent / "lint-imports"
    return subprocess.run([str(lint), str(REPO / "pyproject.toml"), "--no-cache"], cwd=root,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                          timeout=120)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="proxpipe-layers-") as scratch:
        done = check(lay_out(Path(scratch)))
    print(done.stdout.strip() or done.stderr.strip())
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
