"""Supermasks: masks learned over frozen random weights (Zhou et al. 2019; Ramanujan et al. 2020).

- :mod:`~tickets.experiments.supermask.weights`: the straight-through masks and their methods;
- :mod:`~tickets.experiments.supermask.job`: one seed's supermask as a network job;
- :mod:`~tickets.experiments.supermask.run`: the graph and :func:`run_supermask`.

The row in results.csv has variant ``supermask_<method>``.
"""
from tickets.experiments.supermask.run import run_supermask
from tickets.experiments.supermask.weights import (
                                                   METHOD_DEFAULTS,
                                                   METHODS,
                                                   SupermaskWeight,
                                                   attach_supermask,
                                                   keep_count,
                                                   method_defaults,
)

__all__ = ["METHOD_DEFAULTS", "METHODS", "SupermaskWeight", "attach_supermask", "keep_count", "method_defaults",
           "run_supermask"]
