"""`doit docs`: render templates/*.md.j2 into docs/deployment/ from the real configuration and history.

The default environment's guides go to docs/deployment/, any other environment's to
docs/deployment/<env>/. `--no-history` leaves the history out (template ids in the examples then
come from the configuration), so guides committed to a repository do not change with every build.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from proxpipe.api.checks import planned
from proxpipe.api.command import Command, Param
from proxpipe.base import secrets
from proxpipe.base.console import console
from proxpipe.base.fsutil import atomic_write
from proxpipe.domain import handoff

if TYPE_CHECKING:
    from proxpipe.engine.pipeline import Pipeline

GUIDES = ("pipeline-handoffs.md", "pipeline-operation.md", "pipeline-rollback.md")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")


def template_dir(pipeline: Pipeline) -> Path:
    """The project's templates/, or the ones that come with the tool."""
    own = pipeline.root / "templates"
    if own.is_dir() and any(own.glob("*.md.j2")):
        return own
    from importlib.resources import files

    return Path(str(files("proxpipe.templates")))


def output_dir(pipeline: Pipeline, output: str = "") -> Path:
    if output:
        return Path(output) if os.path.isabs(output) else pipeline.root / output
    base = pipeline.root / "docs" / "deployment"
    default = pipeline.config.default_environment or next(iter(pipeline.config.environments))
    return base if pipeline.env.name == default else base / pipeline.env.name


def inputs(pipeline: Pipeline) -> list[Path]:
    """What the guides are made from (besides the history): the templates and pipeline.yaml."""
    return sorted(template_dir(pipeline).glob("*.md.j2")) + [pipeline.config.path]


def state(pipeline: Pipeline, no_history: bool = False, output: str = "") -> dict[str, str] | None:
    """What the guides were made from: the inputs' contents, the history (unless left out) and the environment;
    None while a guide is missing."""
    if not all((output_dir(pipeline, output) / name).is_file() for name in GUIDES):
        return None
    lines = [] if no_history else pipeline.store.lines("history")
    made_from = [path.read_bytes() for path in inputs(pipeline)] + ["\n".join(lines).encode()]
    return {"inputs": hashlib.sha256(b"\0".join(made_from)).hexdigest(), "env": pipeline.env.name}


def docs(pipeline: Pipeline, no_history: bool = False, output: str = "") -> None:
    """The action of `doit docs`: render the guides unless what they are made from is unchanged since the last
    render here."""
    cache = pipeline.state_dir / "cache" / "docs.json"
    key = f"{output}|{no_history}"
    try:
        saved = json.loads(cache.read_text())
    except (OSError, ValueError):
        saved = {}
    made_from = state(pipeline, no_history, output)
    if made_from is not None and saved.get(key) == made_from:
        console.info("· docs  up to date (nothing the guides are made from changed)")
        return
    render(pipeline, no_history, output)
    saved[key] = state(pipeline, no_history, output)
    atomic_write(cache, json.dumps(saved), durable=False)


def render(pipeline: Pipeline, no_history: bool = False, output: str = "") -> list[Path]:
    """Write the guides; returns the files written."""
    import jinja2

    folder = template_dir(pipeline)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(folder)), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
    env.filters["sentence"] = lambda text: text[:1].upper() + text[1:]
    context = build_context(pipeline, use_history=not no_history)
    target = output_dir(pipeline, output)
    _make_shared(target)
    written = []
    for name in GUIDES:
        source = f"{name}.j2"
        shown = (os.path.relpath(folder / source, pipeline.root) if (folder / source).is_relative_to(pipeline.root)
                 else f"proxpipe's templates/{source}")
        text = env.get_template(source).render(**context, template_file=shown)
        path = target / name
        atomic_write(path, secrets.mask(_tidy(text)), mode=0o644)  # meant to be committed and read by all
        written.append(path)
    console.out(f"wrote {', '.join(pipeline.relative(p) for p in written)}")
    return written


def _make_shared(folder: Path) -> None:
    """Create folder and its missing parents readable by all (the pipeline's umask is 077): the guides are meant
    to be committed and read."""
    for path in reversed([p for p in [folder, *folder.parents] if not p.exists()]):
        path.mkdir()
        os.chmod(path, 0o755)


def _tidy(text: str) -> str:
    """One blank line at most between blocks, none at the end: what Markdown linters ask for."""
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip() + "\n"


def build_context(pipeline: Pipeline, use_history: bool) -> dict[str, Any]:
    env = pipeline.env
    stages = [_stage_facts(pipeline, stage) for stage in pipeline.stages]
    builds = pipeline.history.templates() if use_history else []
    build_stage = next(iter(pipeline.producers("template_id")), None)
    template_ids = [int(b["template_id"]) for b in builds]
    if not template_ids and build_stage is not None and build_stage.options.get("template_id_range"):
        low = build_stage.options["template_id_range"][0]
        template_ids = [low + 1, low]  # what the first two builds will be
    return {
        "env": env, "environment": env.name, "default_environment": pipeline.config.default_environment,
        "env_arg": "" if env.name == (pipeline.config.default_environment or env.name) else f" env={env.name}",
        "config_file": pipeline.config.path.name, "state_dir": pipeline.relative(pipeline.state_dir),
        "stages": stages, "by_kind": {s["produces"].name: s for s in stages},
        "proxmox": env.proxmox, "validate": env.validate,
        "commands": [(c.name, c.doc) for c in pipeline.plugins.commands().values()
                     if pipeline.plugins.providers[("command", c.name)] != "commands"],
        "checks": _checks(pipeline),
        "plugins": pipeline.plugins.docs_context(env),
        "plugin_names": pipeline.plugins.names,
        "history_used": use_history, "builds": builds, "template_ids": template_ids,
        "env_vars": environment_variables(pipeline),
        "handoff_kinds": [handoff.TEMPLATE_ID, handoff.INVENTORY, handoff.CONFIGURE],
    }


def _checks(pipeline: Pipeline) -> list[dict[str, str]]:
    from proxpipe.commands.validate import listing

    rows = listing(planned(pipeline.stages, pipeline.plugins.checks()))
    return [{"id": check, "stage": stages, "description": description} for check, stages, description in rows]


def _stage_facts(pipeline: Pipeline, stage) -> dict[str, Any]:
    sources = pipeline.sources(stage)
    readers = [s for s in pipeline.stages if stage in pipeline.sources(s)]
    reads = [source.handoff_path.name for source in sources] or ([stage.consumes.filename] if stage.consumes else [])
    tools = stage.tools()
    return {
        "name": stage.name, "kind": stage.kind, "dir": pipeline.relative(stage.dir),
        "description": stage.config.description, "produces": stage.produces, "consumes": stage.consumes,
        "handoff": pipeline.relative(stage.handoff_path), "handoff_name": stage.handoff_path.name, "lint": None,
        "upstream": sources[0].name if sources else None, "downstream": [s.name for s in readers],
        "sources": [s.name for s in sources], "reads": reads, "id": stage.name.replace("-", "_"),
        "after": [name for name in pipeline.graph.needs[stage.name] if name not in {s.name for s in sources}],
        "inputs": [os.path.relpath(p, stage.dir) for p in stage.inputs()],
        "excludes_text": ", ".join(f"`{e}`" for e in stage.excludes()), "options": stage.options,
        "tool_writes": [(rule.pattern, rule.why) for rule in stage.tool_writes()],
        "requirements": [os.path.relpath(p, stage.dir) for p in stage.required_inputs()],
        "state_subdir": pipeline.relative(pipeline.state_dir / stage.name),
        "param": stage.UPSTREAM_PARAM, "force": stage.force_command(), "keeps_copy": stage.keeps_copy,
        "tool": tools[0].program if tools else stage.kind, "tools": tools,
        "retry": stage.config.retry, "timeout": stage.config.timeout,
        "rel": lambda path, s=stage: os.path.relpath(path, s.dir) if isinstance(path, Path) else path,
        **stage.docs_facts(),
    }


def environment_variables(pipeline: Pipeline) -> list[tuple[str, str]]:
    """(name, where it is used) of every ${VAR} the chosen environment and the plugins refer to. Names only."""
    found: dict[str, str] = {}
    for where, section in ((f"environments.{pipeline.env.name}", pipeline.env.raw),
                           ("plugins", pipeline.config.raw_plugins)):
        for name in _ENV_REF.findall(json.dumps(section, default=str)):
            found.setdefault(name, f"referenced in {pipeline.config.path.name} ({where})")
    return sorted(found.items())


COMMANDS = (
    Command("docs", "render templates/ into docs/deployment/ (handoffs, operation, rollback)", docs,
            (Param("no_history", "no-history", bool, False, "leave the history out (for committed docs)"),
             Param("output", "output", str, "", "write into this directory instead", metavar="DIR")),
            group="set up", description="Renders the deployment guides from pipeline.yaml (and the history), only "
                                        "when something they are made from changed.",
            example="doit docs --no-history"),
)
