"""Built-in plugin: the packer, terraform, tofu and ansible stage kinds, registered through the same
hook a third-party stage kind uses."""

from proxpipe.api.hookspecs import hookimpl
from proxpipe.stages.ansible import AnsibleStage
from proxpipe.stages.packer import PackerStage
from proxpipe.stages.terraform import TerraformStage, TofuStage


@hookimpl
def register_stage_kinds(register):
    for cls in (PackerStage, TerraformStage, TofuStage, AnsibleStage):
        register(cls.kind, cls)
