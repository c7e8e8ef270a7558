"""The built-in plugins: stage kinds, checks, the run log and the webhook notifier (proxpipe.plugins).

Each is a module with @hookimpl functions, listed by name in proxpipe.engine.plugin_manager.DEFAULT_PLUGINS and
registered exactly like third-party plugins found through the ``proxpipe.plugins`` entry point group.
"""
