"""Built-in plugin: the packer, terraform, tofu and ansible stage kinds, registered through the same
hook a third-party stage kind uses."""

from stages.ansible import AnsibleStage
from stages.packer import PackerStage
from stages.terraform import TerraformStage, TofuStage

from .hookspecs import hookimpl


@hookimpl
def register_stage_kinds(register):
    for cls in (PackerStage, TerraformStage, TofuStage, AnsibleStage):
        register(cls.kind, cls)
