"""Plugins: the hook specifications, the manager, and the built-in plugins.

Built-in plugins are listed in DEFAULT_PLUGINS (name -> module) and registered exactly like the
third-party ones found through the ``proxpipe.plugins`` entry point group.
"""

DEFAULT_PLUGINS = {
    "stages": "plugins.builtin_stages",
    "proxmox-checks": "plugins.proxmox_checks",
    "host-checks": "plugins.host_checks",
    "terraform-checks": "plugins.terraform_checks",
    "configure-checks": "plugins.configure_checks",
    "runlog": "plugins.runlog",
    "webhook": "plugins.webhook",
}
