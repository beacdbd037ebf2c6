"""One-off generators of tables the code ships (run from the repo root as python -m tools.NAME)."""
