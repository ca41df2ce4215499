"""Experiment kinds, each a graph of jobs on the engine (see :mod:`tickets.engine`).

- :mod:`~tickets.experiments.imp`: iterative magnitude pruning with rewinding and controls
  (``tickets prune``, ``train``, ``compare``);
- :mod:`~tickets.experiments.stability`: instability analysis (linear mode connectivity);
- :mod:`~tickets.experiments.supermask`: masks learned over frozen random weights.

An experiment module never imports another; what two share lives a layer down.
"""
