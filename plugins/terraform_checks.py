"""Built-in checks of the provision stage: its lint gate, and its state against the inventory handoff."""

from __future__ import annotations

import json
import threading

from proxpipe.api import handoff
from proxpipe.api.checks import Check, Skip, failed, passed
from proxpipe.api.hookspecs import hookimpl
from proxpipe.base.errors import ToolError

KINDS = ("terraform", "tofu")  # the kinds whose lint gate and state these checks read

# lint may run `init`, which rewrites the data directory `show` reads: one at a time per stage.
_busy: dict[str, threading.Lock] = {}


def _lock(stage) -> threading.Lock:
    return _busy.setdefault(stage.name, threading.Lock())


def lint(ctx):
    """The provision stage's lint gate passes (tflint, or what pipeline.yaml configures)."""
    stage = ctx.stage()
    job = ctx.job("lint", stage)
    commands = stage.lint_commands()
    if not commands:
        raise Skip(f"the lint gate of stage {stage.name} is empty")
    try:
        with _lock(stage):
            stage.init(job, stage.binary())
            stage.lint(job, cache=False)  # validation never trusts an earlier verdict
    except ToolError as exc:
        yield failed(stage.name, str(exc))
        return
    yield passed(stage.name, "; ".join(" ".join(c) for c in commands) + ": passed")


def terraform_state(ctx):
    """`show -json` parses, the state has resources, and its inventory output equals the handoff."""
    stage = ctx.stage()
    on_disk = ctx.handoff()  # Skip before anything was provisioned
    target = ctx.pipeline.relative(stage.dir)
    binary = stage.binary()
    job = ctx.job("terraform-state", stage)
    with _lock(stage):
        stage.init(job, binary)  # a fresh checkout (a CI runner) has no data directory yet
        result = stage.step(job, [binary, "show", "-no-color", "-json"], f"{stage.binary_name} show",
                            capture=True, check=False, retryable=False)
    if result.returncode != 0:
        last = (result.output.strip().splitlines() or ["no output"])[-1]
        yield failed(target, f"{stage.binary_name} show failed: {last}")
        return
    try:
        state = json.loads(result.stdout)
    except ValueError:
        yield failed(target, f"{stage.binary_name} show -json did not print JSON")
        return
    values = state.get("values") or {}
    resources = (values.get("root_module") or {}).get("resources") or []
    if not resources:
        yield failed(target, "the state has no resources (removed or destroyed?); run `doit "
                             f"{stage.name}` to provision again")
        return
    output = (values.get("outputs") or {}).get(stage.options["output"])
    if output is None:
        yield failed(target, f"the state has no output {stage.options['output']!r}")
        return
    in_state = handoff.parse_inventory(output["value"])
    if in_state != on_disk:
        yield failed(stage.handoff_path.name, f"differs from output {stage.options['output']!r} in the state: "
                                              f"{_difference(in_state, on_disk)}; it was edited by hand, or "
                                              f"re-run `doit {stage.name}`")
        return
    yield passed(target, f"{len(resources)} resources; output {stage.options['output']!r} equals "
                         f"{stage.handoff_path.name}")


def _difference(expected, actual, path="") -> str:
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in sorted(set(expected) | set(actual)):
            if expected.get(key) != actual.get(key):
                if key not in actual:
                    return f"{path}{key} is missing"
                if key not in expected:
                    return f"{path}{key} was added"
                return _difference(expected[key], actual[key], f"{path}{key}.")
    return f"{path.rstrip('.')} is {json.dumps(actual)}, the state says {json.dumps(expected)}"


@hookimpl
def register_checks(register):
    register(Check("lint", "the provision stage's lint gate passes", "inventory", lint, KINDS))
    register(Check("terraform-state", "the Terraform state has resources and its inventory output equals "
                                      "the inventory handoff", "inventory", terraform_state, KINDS))
