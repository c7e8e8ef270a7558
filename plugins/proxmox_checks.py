"""Built-in checks (see pipeline/checks.py)."""
