"""Drift reports for the tests: one of each status, with an item of every kind."""

import time
from pathlib import Path

from proxpipe.base.events import RunInfo
from proxpipe.domain.drift import FIELD, FILE, HOST, RESOURCE, Change, DriftItem, DriftReport, StageDrift

CREATED = "2026-01-01T12:00:00+0000"


def drifted_report(secret: str = "") -> DriftReport:
    """build: a template field; provision: two resources and the inventory handoff; configure: one host, two
    tasks; a secret (when given) in a diff line and a value."""
    build = StageDrift("build", "packer", (DriftItem(FIELD, "memory", "changed since the build",
                                                     (Change("memory", 2048, 4096),)),))
    provision = StageDrift("provision", "terraform", (
        DriftItem(RESOURCE, "proxmox_virtual_environment_vm.jump_man", "changed outside Terraform",
                  (Change("memory[0].dedicated", 2048, 4096), Change("disk[0].size", 20, 32),
                   Change("tags", ["jump", "terraform"], ["jump", "manual", "terraform"]),
                   Change("started", True, False), Change("description", "a", secret or "b"))),
        DriftItem(RESOURCE, 'proxmox_virtual_environment_vm.worker["w-01"]', "deleted outside Terraform"),
        DriftItem(FILE, "ansible_inventory.json", "differs from what provision would produce",
                  (Change("all.children.jump_hosts.hosts.jump-man.ansible_host", "10.0.0.5", "10.0.0.6"),))))
    configure = StageDrift("configure", "ansible", (
        DriftItem(HOST, "jump-man", "Write the config", (), ("--- before: /etc/app.conf", "+++ after: /etc/app.conf",
                                                            "@@ -1 +1 @@", "-port = 8080", f"+port = 80 {secret}")),
        DriftItem(HOST, "jump-man", "Template the motd", (), ("-hi", "+Welcome"))))
    return DriftReport("production", [build, provision, configure], CREATED, "20260101-120000-abcd")


def in_sync_report() -> DriftReport:
    return DriftReport("lab", [StageDrift("build", "packer"), StageDrift("provision", "terraform"),
                               StageDrift("configure", "ansible")], CREATED)


def unknown_report() -> DriftReport:
    return DriftReport("lab", [StageDrift("build", "packer", reason="Proxmox API https://127.0.0.1:1 GET "
                                          "/cluster/resources failed: connection refused"),
                               StageDrift("provision", "terraform")], CREATED)


def drift_run(state_dir: Path, options=lambda name: {}) -> RunInfo:
    return RunInfo("20260101-120000-abcd", "production", "drift", time.time(), state_dir, state_dir / "logs",
                   _options=options)
