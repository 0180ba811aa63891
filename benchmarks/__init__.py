"""Benchmarks: DataFlow against the raw drivers and its peers, in one run.

``python -m benchmarks --help``; what each scenario measures is in README.md.
Scenario modules: `create_read`, `list_filtered`, `rw_concurrent`.
"""
