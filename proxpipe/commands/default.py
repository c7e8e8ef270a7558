"""`default`: what plain `doit` runs (DOIT_CONFIG's default task). doit's convention is to run the default task when
called bare; proxpipe keeps it for a lab environment (one with a `lab:` section), made to be rebuilt at will. For any
other it says what a deploy would run and asks for `doit deploy` by name: a bare command never changes a cluster.
(`proxpipe` with no arguments prints its help.)"""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxpipe.api.command import Command
from proxpipe.base.console import console

if TYPE_CHECKING:
    from proxpipe.engine.pipeline import Pipeline

EXIT_NOTHING_RUN = 2  # a usage matter: nothing was run


def default(pipeline: Pipeline) -> None:
    from proxpipe.commands.deploy import deploy

    env = pipeline.env
    if env.extras.get("lab") is not None:
        pipeline.take_lock("deploy")
        deploy(pipeline)
        return
    stages = " → ".join(f"{s.name} ({s.kind})" for s in pipeline.stages)
    console.out(f"environment {env.name} is not a lab: plain `doit` deploys only a lab environment (one with a "
                "`lab:` section), so nothing was run")
    console.out(f"a deploy would run the stale stages of: {stages}  (`doit status env={env.name}` shows which, "
                "and why)")
    console.out(f"to deploy it, name the command: doit deploy env={env.name}")
    raise SystemExit(EXIT_NOTHING_RUN)


COMMANDS = (
    Command("default", "plain `doit`: deploy a lab environment; for any other, say what a deploy would run", default,
            hidden=True, group="run",
            description="What `doit` alone runs. In a lab environment it is `deploy`; in any other it runs nothing "
                        "and asks for `doit deploy` by name.",
            example="doit"),
)
