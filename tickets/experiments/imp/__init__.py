"""Iterative magnitude pruning: rounds of train -> prune -> rewind, with controls.

For each seed: initialize (seeded) and save theta_0; round 0 trains the dense network and
captures theta_k at the rewind point; round r scores the previous round's trained ticket
with the criterion, prunes ``fraction`` of the surviving weights, rewinds the survivors to
theta_k and trains them; each control derives its network from that ticket and trains it.
Every trained network gets its own directory and a row in results.csv. A network whose
training loss becomes non-finite stops there and gets status ``diverged``; a diverged ticket
ends its seed's chain (no mask comes from non-finite weights), and the other seeds go on.

- :mod:`~tickets.experiments.imp.job`: :class:`ImpJob`, one network (seed, round, variant);
- :mod:`~tickets.experiments.imp.graph`: :class:`ImpGraph`, the rounds as a graph, and the masks;
- :mod:`~tickets.experiments.imp.run`: :func:`run_imp` and :func:`compare_run`.
"""
from tickets.experiments.imp.graph import ImpGraph
from tickets.experiments.imp.job import ImpJob
from tickets.experiments.imp.run import compare_run, run_imp

__all__ = ["ImpGraph", "ImpJob", "compare_run", "run_imp"]
