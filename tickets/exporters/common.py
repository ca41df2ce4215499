"""What every export format shares: the file header, the model reference, atomic writes, the check.

Every torch-format export is one dict saved with ``torch.save`` and loadable with
``torch.load(path, weights_only=True)`` (no pickled code: only tensors, numbers, strings, lists
and dicts). It always has ``format`` (``tickets-dense``, ``tickets-sparse`` or
``tickets-torch-prune``), ``version`` and ``source`` (run, seed, round, variant). Formats that
keep the run's own architecture (sparse, torch-prune) also hold ``model``: the registry name,
options, classes and input shape tickets builds it from (:func:`build_reference`).
"""
from __future__ import annotations

import copy
import io
from pathlib import Path

import torch
from torch import nn

from tickets.errors import TicketsError
from tickets.store import RunStore, atomic_write_bytes

VERSION = 1
TOLERANCE = 1e-4  # the largest difference of logits an export may show against the masked network


def locate(run_dir: Path, seed: int, round: int, variant: str) -> None:
    """Check that the run has trained (seed, round, variant) and its files are intact; one line saying what it has."""
    store = RunStore(run_dir.parent, run_dir.name)
    seeds = _numbered(run_dir, "seed_")
    if seed not in seeds:
        raise TicketsError(f"{run_dir} has no seed {seed} (its seeds: {_listed(seeds)}); choose one with --seed")
    rounds = _numbered(store.seed_dir(seed), "round_")
    if round not in rounds:
        raise TicketsError(f"seed {seed} of {run_dir} has no round {round} (its rounds: {_listed(rounds)}); "
                           "choose one with --round")
    network = store.network_dir(seed, round, variant)
    if not store.is_done(network):
        trained = sorted(d.name for d in store.round_dir(seed, round).iterdir() if store.is_done(d))
        raise TicketsError(f"round {round} of seed {seed} of {run_dir} has no trained network {variant!r} "
                           f"(trained: {_listed(trained)}); choose one with --variant")
    damaged = store.damaged_files(network)
    if damaged:
        raise TicketsError(f"{network}: {damaged[0]}; run `tickets check {run_dir}` and train it again")


def _numbered(folder: Path, prefix: str) -> list[int]:
    names = (p.name[len(prefix):] for p in folder.glob(f"{prefix}*") if p.is_dir()) if folder.is_dir() else ()
    return sorted(int(n) for n in names if n.isdigit())


def _listed(items) -> str:
    return ", ".join(str(i) for i in items) or "none"


def model_reference(name: str, options: dict, num_classes: int, input_shape) -> dict:
    """What rebuilds a run's architecture from the registry: ``make(num_classes, input_shape, **options)``."""
    return {"name": name, "options": dict(options), "num_classes": int(num_classes),
            "input_shape": [int(d) for d in input_shape]}


def build_reference(reference: dict) -> nn.Module:
    """A fresh module of the architecture ``reference`` names (its weights are to be loaded)."""
    from tickets.plugins import registry

    models = registry()
    try:
        make = models.get("models", reference["name"])
    except TicketsError:
        raise TicketsError(f"the export's model {reference['name']!r} is not registered here; install the plugin "
                           "that provides it (see `tickets plugins --kind models`)") from None
    return make(reference["num_classes"], tuple(reference["input_shape"]), **reference["options"])


def masked_copy(model: nn.Module, mask: dict) -> nn.Module:
    """A copy of ``model`` (eval mode) whose masked weights are exactly zero: the network a ticket is."""
    model = copy.deepcopy(model).eval()
    params = dict(model.named_parameters())
    unknown = sorted(set(mask) - set(params))
    if unknown:
        raise TicketsError(f"the mask names {', '.join(unknown[:3])}, which the model does not have; "
                           "the mask and final.pt are not of one network")
    with torch.no_grad():
        for name, keep in mask.items():
            if keep.shape != params[name].shape:
                raise TicketsError(f"the mask of {name} has shape {tuple(keep.shape)}, the weight "
                                   f"{tuple(params[name].shape)}; the mask and final.pt are not of one network")
            params[name].mul_(keep.to(params[name].dtype))
    return model


def save_torch(obj: dict, out: Path) -> int:
    """Write ``obj`` with ``torch.save`` to a temporary file beside ``out``, then rename it: returns the bytes."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return save_bytes(buffer.getvalue(), out)


def save_bytes(data: bytes, out: Path) -> int:
    atomic_write_bytes(out, data)
    return len(data)


def max_difference(reference: nn.Module, exported, inputs: torch.Tensor, batch: int = 500) -> float:
    """The largest absolute difference of the two networks' logits over ``inputs``."""
    worst = 0.0
    with torch.no_grad():
        for x in inputs.split(batch):
            worst = max(worst, float((reference(x) - exported(x)).abs().max()))
    return worst


def check_outputs(reference: nn.Module, exported, inputs: torch.Tensor, what: str) -> float:
    """Refuse to write an export whose logits differ from the masked network's by more than TOLERANCE."""
    worst = max_difference(reference, exported, inputs)
    if not worst <= TOLERANCE:
        raise RuntimeError(f"the {what} export's logits differ from the ticket's by {worst:.3g} (more than "
                           f"{TOLERANCE:g}); this is a bug in tickets' exporter, please report it")
    return worst
