"""`deploy`, and each stage's own command: `doit build`, `doit provision --template-id 8025`, `doit configure
--inventory FILE`. A stage's command is made from what its kind declares (PARAMS, UPSTREAM_PARAM).

`default` is what plain `doit` runs (DOIT_CONFIG's default task). doit's convention is to run the default task when
called bare; proxpipe keeps it for a lab environment (one with a `lab:` section), made to be rebuilt at will. For any
other it says what a deploy would run and asks for `doit deploy` by name: a bare command never changes a cluster.
(`proxpipe` with no arguments prints its help.)"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from proxpipe.api.command import Command, Param, at_least
from proxpipe.base.console import console

if TYPE_CHECKING:
    from proxpipe.api.stage import Stage
    from proxpipe.engine.pipeline import Pipeline


def deploy(pipeline: Pipeline, force: bool = False, jobs: int = 0) -> None:
    from proxpipe.commands.plan import refuse_unreviewed
    from proxpipe.engine.run import run_stages

    refuse_unreviewed(pipeline)
    stages = pipeline.stages
    run_stages(pipeline, "deploy", stages, forced={s.name for s in stages} if force else set(), jobs=jobs or None)


EXIT_NOTHING_RUN = 2  # a usage matter: nothing was run


def default(pipeline: Pipeline) -> None:
    env = pipeline.env
    if env.extras.get("lab") is not None:
        pipeline.lock("deploy")
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
    Command("deploy", "run every stale stage, in order", deploy,
            (Param("force", "force", bool, False, "run every stage, even the up-to-date ones"),
             Param("jobs", "jobs", int, 0, "stages that may run at once [default: the environment's jobs, 4]",
                   metavar="N", check=at_least(1))),
            lock=True,
            group="run", description="Runs each stage whose inputs, settings, upstream handoff or remote product "
                                     "changed since it last succeeded, and skips the others, saying why.",
            example="doit deploy env=production"),
    Command("default", "plain `doit`: deploy a lab environment; for any other, say what a deploy would run", default,
            hidden=True, group="run",
            description="What `doit` alone runs. In a lab environment it is `deploy`; in any other it runs nothing "
                        "and asks for `doit deploy` by name.",
            example="doit"),
)


def stage_commands(pipeline: Pipeline) -> list[Command]:
    """One command per stage of the environment, named like the stage."""
    return [_stage_command(stage) for stage in pipeline.stages]


def stage_params(kind: type[Stage]) -> tuple[Param, ...]:
    """The options of a stage's command, from what its kind declares."""
    params = [Param(p["name"], p["long"], p["type"], p["default"], p["help"]) for p in kind.PARAMS]
    upstream = kind.UPSTREAM_PARAM
    if upstream:
        params.append(Param(upstream["name"], upstream["long"], str, "", upstream["help"],
                            env_var=upstream.get("env_var", "")))
    return tuple(params)


def _stage_command(stage: Stage) -> Command:
    params = stage_params(type(stage))
    upstream = stage.UPSTREAM_PARAM

    def run(pipeline: Pipeline, **options: Any) -> None:
        from proxpipe.commands.plan import refuse_unreviewed
        from proxpipe.engine.run import run_stages

        refuse_unreviewed(pipeline)
        given = options.pop(upstream["name"], None) if upstream else None
        run_stages(pipeline, stage.name, [stage], forced={stage.name} if stage.forced(options) else set(),
                   given={stage.name: str(given)} if given not in (None, "") else {}, options={stage.name: options})

    description = stage.config.description or stage.description
    return Command(stage.name, f"{stage.kind}: {description}".rstrip(": "), run, params, lock=True,
                   group="stages",
                   description=f"Runs stage {stage.name} alone when it is stale: {description}.",
                   example=f"doit {stage.name}" + (f" --{upstream['long']} ..." if upstream else ""))
