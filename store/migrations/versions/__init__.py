"""Schema revisions, oldest first; generate new ones with ``python -m store.migrate revision``."""
