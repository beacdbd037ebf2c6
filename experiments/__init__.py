"""Sweeps that chose the defaults (run on dev); their results feed docs/design.md. Run as python -m experiments.NAME."""
