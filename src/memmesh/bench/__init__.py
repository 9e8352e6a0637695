"""Benchmarks shipped with the package (``memmesh bench ...``); each returns a JSON-ready dict.

Every benchmark measures a baseline in the same run and reports ratios against it: absolute
times on shared machines are noisy, ratios hold.
"""
