"""Mode connectivity (Garipov et al., NeurIPS 2018): a curve of low error between two trained networks.

``tickets connect NET_A NET_B`` trains the bend of a quadratic Bezier curve (or a one-bend
polygonal chain) between two networks of the same architecture, under their mask when they
share one, and evaluates train loss, train error and test error at evenly spaced t along the
curve and along the straight line between them.

- :mod:`~tickets.experiments.connect.curves`: the mathematics (the curves, the bend, barriers);
- :mod:`~tickets.experiments.connect.ends`: the two networks, their run config and their mask;
- :mod:`~tickets.experiments.connect.job`: the curve as a network job;
- :mod:`~tickets.experiments.connect.run`: the graph and :func:`run_connect`;
- :mod:`~tickets.experiments.connect.section`: the plot and the report section.
"""
from tickets.experiments.connect.curves import CURVES, barrier, coefficients
from tickets.experiments.connect.run import DEFAULT_POINTS, run_connect

__all__ = ["CURVES", "DEFAULT_POINTS", "barrier", "coefficients", "run_connect"]
