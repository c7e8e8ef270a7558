"""`doit rollback` and `doit destroy`: going back, per stage, with clear refusals that change nothing.

* build: point template_id.txt at the previous template in the history that still exists (or --to one
  that the history knows and the node still has), then provision and configure from it.
* provision: --mode destroy tears down what provision made and removes the inventory handoff;
  --mode replace re-creates the configured resources (-replace) and then configures them.
* configure: --to GIT_REF runs the playbook as it was at that ref (from a temporary git worktree)
  against today's inventory; the next deploy sees configure no longer matches today's playbook.
* provision and configure: --mode restore writes back a damaged handoff's last valid value (proxpipe.engine.damage).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from doit.exceptions import TaskFailed

from proxpipe.api.stage import history_note
from proxpipe.base import interrupts
from proxpipe.base.console import console
from proxpipe.base.errors import PipelineError
from proxpipe.base.events import StageOutcome
from proxpipe.base.fsutil import display
from proxpipe.domain import handoff, template_lifecycle
from proxpipe.engine.damage import last_valid
from proxpipe.engine.execute import execute, stage_job
from proxpipe.engine.uptodate import mark_up_to_date

if TYPE_CHECKING:
    from proxpipe.api.stage import Stage
    from proxpipe.engine.pipeline import Pipeline

MODES = ("destroy", "replace", "restore")


def rollback(pipeline: Pipeline, stage: str, to: str, mode: str):
    """The doit action of `doit rollback --stage NAME [--to X] [--mode destroy|replace|restore]`."""
    if not stage:
        names = ", ".join(s.name for s in pipeline.stages)
        raise PipelineError(f"rollback needs --stage (one of {names}); see docs/deployment/pipeline-rollback.md")
    target = pipeline.stage(stage)
    pipeline.start_run(f"rollback --stage {stage}")
    kind = target.produces.name
    if mode not in MODES:
        raise PipelineError(f"--mode {mode!r}: use destroy, replace or restore")
    if kind == "template_id":
        if mode == "restore":
            raise PipelineError(f"stage {stage} restores a template with --to ID (see `doit history`)")
        return rollback_build(pipeline, target, to)
    if mode == "restore":
        return restore(pipeline, target)
    if kind == "inventory":
        return destroy(pipeline, target) if mode == "destroy" else replace(pipeline, target)
    if kind == "configure":
        return rollback_configure(pipeline, target, to)
    raise PipelineError(f"stage {stage} ({target.kind}) has no rollback")


# ----------------------------------------------------------------------------- a damaged handoff


def restore(pipeline: Pipeline, stage: Stage) -> None:
    """`doit rollback --stage NAME --mode restore`: write the stage's last valid handoff back (from the kept copy,
    or what the stage kind restores from, e.g. the Terraform state's output). Changes nothing else."""
    if stage.handoff_text() is None:
        raise PipelineError(f"{display(stage.handoff_path)} is missing, not damaged: nothing to restore "
                            "(`doit deploy` makes it)")
    last = last_valid(pipeline, stage)
    started = time.monotonic()
    console.info(f"↶ {stage.name}: restoring {stage.handoff_path.name}")
    value = stage.restore_value(stage_job(pipeline, stage, f"{stage.name}-restore"))
    with interrupts.deferred():  # the handoff and its history line go together
        stage.write_handoff(value)
        digest, summary = stage.handoff_digest(), stage.produces.summary(value)
        duration = time.monotonic() - started
        pipeline.record(stage, "restore", outcome="ok", handoff=summary, handoff_sha256=digest,
                        duration=round(duration, 2))
    pipeline.outcomes.append(StageOutcome(stage.name, stage.kind, "ran", duration, summary, "restored"))
    if last is None or not last.get("handoff_sha256"):
        note = ""
    elif last["handoff_sha256"] == digest:
        note = f" (the one {history_note(last)} wrote)"
    else:
        note = (f" (not the one {history_note(last)} wrote: it changed since; the next `doit deploy` runs "
                "what depends on it)")
    console.info(f"  ✓ {pipeline.relative(stage.handoff_path)} restored: {summary}{note}")


# ----------------------------------------------------------------------------- build


def choose_template(pipeline: Pipeline, stage: Stage, to: str) -> tuple[int, int | None]:
    """(the template to roll back to, the current one); PipelineError when there is none."""
    current = stage.handoff_value()
    builds = [int(e["template_id"]) for e in template_lifecycle.built_templates(pipeline.history)]
    proxmox = pipeline.require_proxmox("check which templates still exist")
    existing = {int(vm["vmid"]) for vm in proxmox.vms() if int(vm.get("template", 0))}
    if to:
        wanted = handoff.parse_template_id(to) if to.strip().lstrip("-").isdigit() else None
        if wanted is None or wanted not in builds:
            known = ", ".join(map(str, builds)) or "none yet"
            raise PipelineError(f"--to {to}: not a template this pipeline built in environment {pipeline.env.name} "
                                f"(built: {known}); see `doit history`")
        if wanted not in existing:
            raise PipelineError(f"--to {wanted}: template {wanted} no longer exists on {proxmox.node}")
        if wanted == current:
            raise PipelineError(f"--to {wanted}: template {wanted} is already the current one")
        return wanted, current
    older = builds[builds.index(current) + 1:] if current in builds else builds
    for candidate in older:
        if candidate in existing and candidate != current:
            return candidate, current
    raise PipelineError(f"no earlier template to roll back to: the history of environment {pipeline.env.name} "
                        f"has no template older than {current} that still exists on {proxmox.node}")


def rollback_build(pipeline: Pipeline, stage: Stage, to: str):
    chosen, current = choose_template(pipeline, stage, to)
    was = current if current is not None else ("damaged" if stage.handoff_text() is not None else "none")
    with interrupts.deferred():  # the handoff and its history line go together
        stage.write_handoff(chosen)
        pipeline.record(stage, "rollback", outcome="ok", template_id=chosen, handoff=f"template {chosen}",
                        handoff_sha256=stage.handoff_digest(), **{"from": current})
    pipeline.outcomes.append(StageOutcome(stage.name, stage.kind, "ran", 0.0, f"template {chosen}",
                                          f"rolled back from {current}"))
    console.info(f"↶ {stage.name}: {stage.handoff_path.name} now {chosen} (was {was}); re-creating the VMs from it")
    mark_up_to_date(pipeline, stage)
    return run_downstream(pipeline, stage)


def run_downstream(pipeline: Pipeline, stage: Stage):
    """Run every stage after `stage`, whatever its state, marking each up to date for doit."""
    for later in pipeline.downstream(stage):
        result = execute(pipeline, later, {})
        if isinstance(result, TaskFailed):
            return result
        mark_up_to_date(pipeline, later)
    return None


# ----------------------------------------------------------------------------- provision


def forget(pipeline: Pipeline, stages: list[Stage]) -> None:
    pipeline.store.forget_stages([stage.name for stage in stages])


def _terraform(stage: Stage):
    if not hasattr(stage, "plan"):
        raise PipelineError(f"stage {stage.name} ({stage.kind}) is not a terraform or tofu stage")
    return stage


def destroy(pipeline: Pipeline, stage: Stage):
    """Tear down what provision made; remove the inventory handoff (configure is stale afterwards)."""
    stage = _terraform(stage)
    started = time.monotonic()
    job = stage_job(pipeline, stage, f"{stage.name}-destroy")
    console.info(f"↻ {stage.name}: destroying what it made ({stage.kind} · {pipeline.relative(stage.dir)})")
    binary = stage.binary()
    forget(pipeline, pipeline.downstream(stage, inclusive=True))  # it and every stage after it are stale now
    stage.init(job, binary)
    template_id = _template_for(pipeline, stage)
    if template_id is None:
        if not stage.state_addresses(job, binary):
            console.info(f"  nothing to destroy: {stage.name} has not provisioned anything")
            return None
        raise PipelineError(f"cannot destroy {stage.name}: the template id it provisioned from is unknown "
                            f"(no {stage.consumes.filename}); run `doit {stage.name} --template-id N` first")
    stage.write_vars(template_id)
    stage.step(job, [binary, "destroy", "-input=false", "-no-color", "-auto-approve", *stage.var_args()],
               f"{stage.binary_name} destroy", with_vars=True)
    pipeline.store.delete_handoff(stage.config.handoff)
    duration = time.monotonic() - started
    pipeline.record(stage, "destroy", outcome="ok", duration=round(duration, 2))
    pipeline.outcomes.append(StageOutcome(stage.name, stage.kind, "ran", duration, None, "destroyed"))
    console.info(f"  ✓ destroyed in {duration:.1f}s; {stage.handoff_path.name} removed (provision and configure "
                 "are stale until the next deploy)")
    return None


def _template_for(pipeline: Pipeline, stage: Stage) -> int | None:
    upstream = pipeline.upstream(stage)
    if upstream is not None and upstream.handoff_text() is not None:
        return upstream.read_handoff()
    try:
        import json

        return json.loads(stage.vars_file.read_text()).get(stage.options["template_id_var"])
    except (OSError, ValueError):
        return None


def replace(pipeline: Pipeline, stage: Stage):
    """Re-create the configured resources (-replace of each instance), then configure them."""
    stage = _terraform(stage)
    addresses = stage.options["replace"] or []
    if not addresses:
        raise PipelineError(f"{stage.config.where}.replace lists no resource address to re-create")
    job = stage_job(pipeline, stage, f"{stage.name}-replace")
    binary = stage.binary()
    stage.init(job, binary)
    instances = stage.replace_instances(job, binary)
    if not instances:
        raise PipelineError(f"none of {', '.join(addresses)} is in the state of {stage.name}; nothing to replace "
                            "(run `doit deploy` first)")
    console.info(f"↻ {stage.name}: replacing {', '.join(instances)}")
    stage.write_vars(_template_for(pipeline, stage))
    forget(pipeline, pipeline.downstream(stage, inclusive=True))  # if this fails half-way, deploy repairs it
    stage.plan(job, binary, [f"-replace={a}" for a in instances])
    stage.apply(job, binary)
    value = stage.inventory(job, binary)
    stage.write_handoff(value)
    pipeline.record(stage, "replace", outcome="ok", replaced=instances, handoff=stage.produces.summary(value))
    pipeline.outcomes.append(StageOutcome(stage.name, stage.kind, "ran", 0.0, stage.produces.summary(value),
                                          f"replaced {', '.join(instances)}"))
    mark_up_to_date(pipeline, stage)
    return run_downstream(pipeline, stage)


# ----------------------------------------------------------------------------- configure


def _git(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)


def rollback_configure(pipeline: Pipeline, stage: Stage, ref: str):
    if not ref:
        raise PipelineError("rollback of configure needs --to GIT_REF, the commit whose playbook to run")
    top = _git(pipeline.root, "rev-parse", "--show-toplevel")
    if top.returncode != 0:
        raise PipelineError(f"{pipeline.root} is not a git repository; configure rollback runs the playbook of a "
                            "git ref")
    commit = _git(pipeline.root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    if commit.returncode != 0:
        raise PipelineError(f"--to {ref}: unknown git ref (see `git log`)")
    sha = commit.stdout.strip()
    relative = Path(stage.dir).resolve().relative_to(Path(top.stdout.strip()).resolve())
    with tempfile.TemporaryDirectory(prefix="proxpipe-rollback-") as scratch:
        tree = Path(scratch) / "tree"
        added = _git(pipeline.root, "worktree", "add", "--detach", "--force", str(tree), sha)
        if added.returncode != 0:
            raise PipelineError(f"git worktree add {ref} failed: {added.stderr.strip().splitlines()[-1:]}")
        try:
            old_dir = tree / relative
            if not old_dir.is_dir():
                raise PipelineError(f"--to {ref}: {relative} does not exist at that ref")
            return _run_old_playbook(pipeline, stage, old_dir, ref, sha)
        finally:
            _git(pipeline.root, "worktree", "remove", "--force", str(tree))
            shutil.rmtree(tree, ignore_errors=True)


def _run_old_playbook(pipeline: Pipeline, stage: Stage, old_dir: Path, ref: str, sha: str):
    options = {key: (old_dir / Path(value).relative_to(stage.dir) if isinstance(value, Path)
                     and Path(value).is_relative_to(stage.dir) else value) for key, value in stage.options.items()}
    if not Path(options["playbook"]).is_file():
        raise PipelineError(f"--to {ref}: the playbook {Path(options['playbook']).name} does not exist at that ref")
    old = type(stage)(stage.config._replace(dir=old_dir, options=options), pipeline)
    console.info(f"↶ {stage.name}: running the playbook as of {ref} ({sha[:12]}) against today's inventory")
    result = execute(pipeline, old, {})
    if isinstance(result, TaskFailed):
        return result
    pipeline.record(stage, "rollback", outcome="ok", git_ref=ref, git=sha[:12],
                    message=f"ran the playbook as of {ref}")
    forget(pipeline, [stage])
    return None
