"""tickets-prune-at-init: data-dependent and data-free criteria that score weights at initialization.

Installing this distribution registers, through the ``tickets`` entry point
``prune_at_init``, the pruning criteria ``snip``, ``grasp`` and ``synflow`` (see
:mod:`tickets_prune_at_init.scores` for the formulas and conventions).
"""
import tickets
from tickets_prune_at_init.scores import grasp, network_at_init, snip, synflow

__version__ = "0.1.0"
__all__ = ["grasp", "network_at_init", "snip", "synflow", "register_criteria"]


@tickets.hookimpl
def register_criteria(register):
    """SNIP, GraSP and SynFlow, each scoring the weights at their initial values under the current mask."""
    register("snip", snip,
             description="SNIP (Lee et al. 2019): keep the largest |g * w| at init, "
                         "g = loss gradient on a few training batches")
    register("grasp", grasp,
             description="GraSP (Wang et al. 2020): keep the largest w * (H g) at init, "
                         "i.e. remove the largest S = -w * (H g)")
    register("synflow", synflow,
             description="SynFlow (Tanaka et al. 2020): data-free, 100 iterative steps on |dR/dw * w|, "
                         "R = sum(f(1) with |weights|)")
