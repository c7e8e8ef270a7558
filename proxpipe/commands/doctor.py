"""`doit doctor`: the tools the chosen environment needs, whether they are found, their versions against
the minimum, how to install what is missing, and whether the Proxmox API answers and accepts the token."""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from proxpipe.api.command import JSON, Command
from proxpipe.base.console import console, table
from proxpipe.base.errors import PipelineError

if TYPE_CHECKING:
    from proxpipe.api.stage import ToolSpec
    from proxpipe.engine.pipeline import Pipeline

def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def _row(pipeline: Pipeline, spec: ToolSpec, used_by: str) -> tuple[list[str], bool]:
    from proxpipe.domain import toolrunner as tools  # doctor's, not every command's start-up

    path = tools.which(spec.program, pipeline.root)
    if path is None:
        return [spec.program, used_by, "MISSING", "", spec.minimum or "-", spec.install], False
    if not spec.version_args:  # presence is all that is checked
        return [spec.program, used_by, path, "", "-", ""], True
    found = tools.version(path, spec.version_args, spec.version_pattern, pipeline.state_dir)
    too_old = bool(spec.minimum) and found != "unknown" and _version_tuple(found) < _version_tuple(spec.minimum)
    status = f"{found} (too old)" if too_old else found
    shown = os.path.relpath(path, pipeline.root) if path.startswith(str(pipeline.root)) else path
    return [spec.program, used_by, shown, status, spec.minimum or "-", spec.install if too_old else ""], not too_old


def check(pipeline: Pipeline, json: bool = False) -> None:
    pipeline.state_dir.mkdir(parents=True, exist_ok=True)
    rows, oks, problems = [], [], []
    for stage in pipeline.stages:
        for spec in stage.tools():
            row, ok = _row(pipeline, spec, f"{stage.name} ({spec.option or 'tool'})")
            rows.append(row)
            oks.append(ok)
            if not ok:
                problems.append(f"{spec.program} for {stage.name}")
    for spec in pipeline.plugins.doctor_tools(pipeline.env):  # what plugins need, e.g. the lab's sshd
        row, ok = _row(pipeline, spec, spec.option or "environment")
        rows.append(row)
        oks.append(ok)
        if not ok:
            problems.append(f"{spec.program} for {spec.option or 'the environment'}")
    found = _extras(pipeline)
    problems += [f"proxpipe's {e['name']} extra ({e['install']})" for e in found if e["needed"] and not e["installed"]]
    api = _api(pipeline)
    if not api[0]:
        problems.append("the Proxmox API")
    if json:  # schemas/doctor.schema.json
        console.json({"format_version": 1, "environment": pipeline.env.name, "ok": not problems,
                      "problems": problems, "tools": [_tool(row, ok) for row, ok in zip(rows, oks, strict=True)],
                      "extras": found, "proxmox_api": {"ok": api[0], "detail": api[1]}})
    else:
        console.out(f"environment {pipeline.env.name}")
        console.out(table(rows, ["program", "needed by", "found at", "version", "minimum", "how to install"]))
        console.out(table([[e["name"], "installed" if e["installed"] else f"MISSING (no {', '.join(e['missing'])})",
                            "yes" if e["needed"] else "no", e["purpose"], "" if e["installed"] else e["install"]]
                           for e in found], ["extra", "state", "needed here", "what for", "how to install"]))
        console.out(f"Proxmox API: {api[1]}")
    if problems:
        raise PipelineError(f"doctor: missing or not working: {', '.join(problems)}")
    console.out("everything this environment needs is here")


_TOOL_KEYS = ("program", "needed_by", "found_at", "version", "minimum", "install")


def _tool(row: list[str], ok: bool) -> dict:
    """A row of the table as --json gives it: "" where the table shows MISSING or -."""
    tool = {key: "" if value in ("-", "MISSING") else value for key, value in zip(_TOOL_KEYS, row, strict=True)}
    return {**tool, "found": row[2] != "MISSING", "ok": ok}


def _extras(pipeline: Pipeline) -> list[dict]:
    """proxpipe's extras: installed or not, and whether this environment needs it (the lab: an environment with a
    `lab:` section; postgres: one with shared state)."""
    from proxpipe.base import extras

    env = pipeline.env
    needed = {"lab": env.extras.get("lab") is not None, "postgres": env.state is not None}
    return [{"name": e.name, "installed": not (absent := extras.missing(e.name)), "missing": absent,
             "needed": needed.get(e.name, False), "purpose": e.purpose, "install": e.install} for e in extras.EXTRAS]


def _api(pipeline: Pipeline) -> tuple[bool, str]:
    cfg = pipeline.env.proxmox
    if cfg is None:
        return True, "not configured for this environment"
    how = f"token {cfg.token_id}" if cfg.token_id else f"user {cfg.user}"
    try:
        version = pipeline.proxmox.version()
    except PipelineError as exc:
        return False, f"{cfg.url} ({how}): {exc}"
    return True, f"{cfg.url} answers (PVE {version}); {how} accepted (secret not shown)"


COMMANDS = (
    Command("doctor", "the tools this environment needs: found, version, how to install", check, (JSON,),
            group="set up",
            description="Checks every program the environment's stages and plugins need against its minimum "
                        "version, which of proxpipe's extras are installed, and whether the Proxmox API answers "
                        "and accepts the token.",
            example="doit doctor env=production"),
)
