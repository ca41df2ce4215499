"""Sparse training from scratch at a fixed density: static masks, SET (Mocanu et al. 2018), RigL (Evci et al. 2020).

- :mod:`~tickets.experiments.sparse.densities`: per-layer counts (uniform, ERK, a run's own) and
  the random starting mask;
- :mod:`~tickets.experiments.sparse.updates`: when masks change and by how much, the log;
- :mod:`~tickets.experiments.sparse.job`: one sparse network as a network job;
- :mod:`~tickets.experiments.sparse.run`: the graph, ``--like RUN`` and :func:`run_sparse`;
- :mod:`~tickets.experiments.sparse.section`: the report's comparison with RUN's tickets.

The drop-and-grow rules are plugins (``register_mask_updates``; built-ins in
:mod:`tickets.builtin.mask_updates`). Rows in results.csv have the method as variant
(``static``, ``set``, ``rigl``) and the distribution as criterion.
"""
from tickets.experiments.sparse.densities import erk_densities, exact_counts, layer_counts, random_mask, target_count
from tickets.experiments.sparse.run import like_config, run_sparse
from tickets.experiments.sparse.updates import LOG_COLUMNS, STATIC, MaskUpdates, Schedule

__all__ = ["LOG_COLUMNS", "STATIC", "MaskUpdates", "Schedule", "erk_densities", "exact_counts", "layer_counts",
           "like_config", "random_mask", "run_sparse", "target_count"]
