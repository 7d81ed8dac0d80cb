"""The benchmark runner: matrix files -> RunSpecs -> one-run trainer -> results/ folders.

Depends on ``samplers`` and ``models``; never the other way round. ``plots`` imports only
the torch- and fcntl-free modules :mod:`benchmarks.catalogue`, :mod:`benchmarks.comparisons`
and :mod:`benchmarks.files` (tests/test_boundaries.py), so it runs without the runner.
"""
