"""Stage kinds: one module per kind on the small base in stages/base.py."""
