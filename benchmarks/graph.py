"""The stage graph's benchmarks (issue 22), run by bench.py (`--only graph,graph-noop`):

* the graph's independent branches at once against the same stages one after another (deploy --jobs 1), side by
  side, from the templates to configured VMs (the VMs and their inventories destroyed before each run; the builds,
  up to date, skipped in both): target at most 0.65x. Two graphs: two independent branches (build, provision,
  configure each), and lab-graph as pipeline.yaml has it (two branches joined by the base playbook, then the web
  playbook: the join runs alone, so it gains less).
* a no-op of a 12-stage graph (four branches) against `doit --version`: target at most 1.6x; and what each stage
  adds to a no-op, against the 3-stage pipeline's: a few milliseconds at most.
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from tests.labproject import REPO, LabProject, next_block

BRANCHES = {"web": ("web.yml", 11), "db": ("base.yml", 21)}


def lab_graph(root: Path, stages: dict) -> LabProject:
    """A lab project whose default environment is a graph of these stages, on loopback addresses of its own."""
    project = LabProject(root)
    env = copy.deepcopy(yaml.safe_load((REPO / "pipeline.yaml").read_text())["environments"]["lab-graph"])
    block = next_block()
    env["lab"].update(address=f"{block}.1", boot_seconds=0, idle_minutes=20)
    env["proxmox"].update(url=f"https://{block}.1:8006", check_cache=10)
    env["stages"] = stages
    for stage in stages.values():
        for vm in (stage.get("vars") or {}).get("vms", {}).values():
            vm["address"] = f"{block}.{vm['address']}"
    project.config["environments"]["lab-graph"] = env
    project.config["default_environment"] = "lab-graph"
    project.write_config()
    return project


def shipped() -> dict:
    """lab-graph's stages, as pipeline.yaml has them, with the VMs' addresses as host numbers."""
    stages = copy.deepcopy(yaml.safe_load((REPO / "pipeline.yaml").read_text())["environments"]["lab-graph"]["stages"])
    for stage in stages.values():
        for vm in (stage.get("vars") or {}).get("vms", {}).values():
            vm["address"] = vm["address"].rsplit(".", 1)[1]
    return stages


def branches(count: int = 2) -> dict:
    """count independent branches: build-N, provision-N (one VM), configure-N (a playbook on its own host)."""
    base = shipped()
    stages: dict = {}
    for n in range(count):
        name, (playbook, host) = (list(BRANCHES.items()) * count)[n]
        suffix = f"{name}{n // len(BRANCHES) or ''}"
        stages[f"build-{suffix}"] = {**copy.deepcopy(base[f"build-{name}"]), "needs": []}
        provision = copy.deepcopy(base[f"provision-{name}"])
        provision.update(needs=[f"build-{suffix}"], dir=f"lab/terraform-{suffix}")
        provision["vars"]["group"] = f"{name}_hosts"
        provision["vars"]["vms"] = {f"{suffix}-01": {"vm_id": 300 + n, "address": str(host + n * 2)}}
        stages[f"provision-{suffix}"] = provision
        configure = {**copy.deepcopy(base["configure-base"]), "needs": [f"provision-{suffix}"], "playbook": playbook}
        stages[f"configure-{suffix}"] = configure
    return stages


def roots(project: LabProject, stages: dict) -> None:
    """A Terraform root of its own for each provision stage (the lab's module, linked), as in lab/terraform-web."""
    for stage in stages.values():
        folder = project.root / stage["dir"]
        if stage["kind"] == "terraform" and not folder.exists():
            folder.mkdir(parents=True)
            for name in ("main.tf", ".terraform.lock.hcl"):
                (folder / name).symlink_to(project.root / "lab" / "terraform" / name)
