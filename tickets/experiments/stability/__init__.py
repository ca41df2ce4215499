"""Instability analysis: linear mode connectivity (Frankle, Dziugaite, Roy & Carbin, ICML 2020).

For a network that starts at iteration k (the dense network of a config, or a round's ticket
or control of a run, with the dense network's weights theta_k), two copies train from k to the
end of training with different data orders and augmentation draws; the test error along the
straight line between them gives the instability.

- :mod:`~tickets.experiments.stability.paths`: the mathematics (interpolation, instability, ``--at``);
- :mod:`~tickets.experiments.stability.jobs`: the dense trajectory and the copies;
- :mod:`~tickets.experiments.stability.graph`: the analysis as a graph of jobs;
- :mod:`~tickets.experiments.stability.run`: :func:`analyse_config`, :func:`analyse_run`;
- :mod:`~tickets.experiments.stability.section`: plots and the report section.
"""
from tickets.experiments.stability.paths import instability, interpolate, path_errors, reset_batchnorm
from tickets.experiments.stability.run import DEFAULT_POINTS, analyse_config, analyse_run

__all__ = ["DEFAULT_POINTS", "analyse_config", "analyse_run", "instability", "interpolate", "path_errors",
           "reset_batchnorm"]
