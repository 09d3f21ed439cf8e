"""Alembic environment for the schema, inside ``store`` so that installed copies migrate too."""
