"""Tests for the store package: migrations, database handle and queries."""
