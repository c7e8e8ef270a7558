"""Built-in check: configure.json was made from today's inventory and playbook inputs (no drift)."""

from __future__ import annotations

import os

from proxpipe.api.checks import Check, failed, passed
from proxpipe.api.hookspecs import hookimpl
from proxpipe.base.fsutil import sha256_file


def configure_current(ctx):
    """configure.json exists and its inventory and input digests equal today's."""
    recap = ctx.handoff()
    stage = ctx.stage()
    target = stage.handoff_path.name
    inventory_file = ctx.inventory()[1]
    problems = []
    if inventory_file.exists() and recap.get("inventory_sha256") != sha256_file(inventory_file):
        problems.append(f"{inventory_file.name} changed since the last configure")
    now = stage.input_digests()
    then = recap.get("inputs") or {}
    changed = sorted(name for name in set(now) | set(then) if now.get(name) != then.get(name))
    if changed:
        shown = ", ".join(os.path.join(ctx.pipeline.relative(stage.dir), c) for c in changed[:3])
        problems.append(f"playbook inputs changed since the last configure: {shown}"
                        + (f" and {len(changed) - 3} more" if len(changed) > 3 else ""))
    if problems:
        yield failed(target, "; ".join(problems) + f"; run `doit {stage.name}`")
    else:
        yield passed(target, f"made at {recap.get('finished')} from today's inventory and playbook")


@hookimpl
def register_checks(register):
    register(Check("configure-current", "configure.json was made from today's inventory and playbook inputs",
                   "configure", configure_current))
