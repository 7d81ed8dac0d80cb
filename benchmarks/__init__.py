"""The benchmark runner: matrix files -> RunSpecs -> one-run trainer -> results/ folders.

Depends on ``samplers`` and ``models``; never the other way round.
"""
