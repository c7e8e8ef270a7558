"""The Jinja templates of the generated deployment guides (package data of proxpipe.templates)."""
