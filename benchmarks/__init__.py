"""Benchmark scripts for npformer (not part of the installed package).

Run them as ``python -m benchmarks.NAME`` or ``python benchmarks/NAME.py`` from the
repository root; ``benchmarks.common`` holds the shared timing and reporting helpers.
"""
