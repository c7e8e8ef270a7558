"""The local lab as a plugin: an environment with a `lab:` section gets its Proxmox API from the lab's stand-in
(started on first use), with `lab: {postgres: true}` the database of its shared state from the lab's own PostgreSQL
(started on first use too), `doit lab-stop`, and the lab's programs in `doit doctor`. The core never imports the lab;
it is registered like any plugin (proxpipe.engine.plugin_manager.DEFAULT_PLUGINS)."""

from __future__ import annotations

from pathlib import Path

from proxpipe.api import Command, Example, Field, ToolSpec, hookimpl, schema

from .settings import LAB_FIELDS, lab_config


@hookimpl
def environment_fields():
    return {"lab": Field(schema.MAP, "Run the embedded local lab (omit for a real cluster).", fields=LAB_FIELDS)}


@hookimpl
def proxmox_endpoint(environment, proxmox):
    if lab_config(environment) is None:
        return None
    from . import control

    control.ensure(environment)
    return proxmox if proxmox.ca_file else proxmox._replace(ca_file=control.ca_file(environment))


@hookimpl
def state_endpoint(environment, state):
    lab = lab_config(environment)
    if lab is None or not lab.postgres:
        return None
    from . import control, database

    wanted = database.endpoint(state.url.reveal(), state.where)
    if environment.proxmox is not None:
        control.ensure(environment)  # first: the lab's services start together, and its idle timer stops both
    database.ensure(control.home(environment), wanted)
    return None


@hookimpl
def register_commands(register):
    register(Command("lab-stop", "stop the local lab's services (the Proxmox stand-in and the VMs' sshd)", _stop,
                     group="lab", description="Stops the environment's Proxmox stand-in, the sshd of its VMs and its "
                                              "PostgreSQL; the next command that needs them starts them again.",
                     example="proxpipe lab-stop env=lab"))


@hookimpl
def register_examples(register):
    register(Example("lab", "the local lab: the whole pipeline on this machine, no cluster needed", _example_files,
                     _install_tools))


def _example_files() -> dict[str, str | Path]:
    from . import PROJECT_FILES

    here = Path(__file__).parent
    found: dict[str, str | Path] = {"pipeline.yaml": (here / "example.pipeline.yaml").read_text()}
    for pattern in PROJECT_FILES:
        for source in sorted(here.glob(pattern)):
            found[f"lab/{source.relative_to(here)}"] = source
    return found


def _install_tools(root: Path) -> list[str]:
    from proxpipe.base import extras

    from . import terraform_install

    done = ["lab tools: " + "; ".join(terraform_install.install(root / ".tools"))]
    absent = extras.missing("lab")
    if absent:  # said now, not as a ModuleNotFoundError at the first deploy
        done.append(f"the lab needs proxpipe's lab extra, which is not installed here (no module {', '.join(absent)}):"
                    f" {extras.extra('lab').install}")
    return done


def _stop(pipeline) -> None:
    from . import control, database

    control.stop(pipeline.env, verbose=True)
    if database.stop(control.home(pipeline.env)):  # normally the stand-in stopped it already
        print(f"stopped the lab's PostgreSQL of environment {pipeline.env.name}")


@hookimpl
def docs_context(environment):
    lab = lab_config(environment)
    return {"lab": lab._asdict()} if lab else None


@hookimpl
def doctor_tools(environment):
    if lab_config(environment) is None:
        return None
    specs = [ToolSpec("sshd", (), "", "", "apt-get install openssh-server", "the lab"),
             ToolSpec("ssh-keygen", (), "", "", "apt-get install openssh-client", "the lab")]
    if lab_config(environment).postgres:
        from .database import program

        specs.append(ToolSpec(program("postgres"), ("--version",), r"(\d+\.\d+)", "13", "apt-get install postgresql",
                              "the lab's PostgreSQL"))
    return specs
