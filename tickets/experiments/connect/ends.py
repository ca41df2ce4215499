"""The two ends of a curve: network directories of any runs, their run's config, their mask, and the checks
that two networks can be joined (same architecture, same mask), all made before anything is written.

A network directory holds final.pt and done.json (``RUN/seed_S/round_R/VARIANT``, a stability copy
``RUN/stability/seed_S/round_R/VARIANT/k_K/copy_C``, a connect run's curve). Its run is the nearest
folder above it with a config.yaml. Its mask is its own (random_prune's mask.pt, a supermask's
final_mask.pt), else its round's (``round_R/mask.pt`` beside it, or for a stability copy
``RUN/seed_S/round_R/mask.pt``); a mask that keeps every weight (round 0's) is no mask.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch

from tickets.errors import TicketsError
from tickets.store import RunStore, sha256_file, torch_load
from tickets.ticket import State

COPY_DIR = re.compile(r"stability/(seed_\d+)/(round_\d+)/[^/]+/k_\d+/copy_\d+$")


@dataclass
class End:
    """One end of the curve: its directory, its run's directory, its weights and its mask (None: dense)."""

    flag: str  # NET_A or NET_B, for messages
    dir: Path
    run_dir: Path
    state: State
    sha256: str
    mask_path: Path | None
    mask: dict | None


def find_end(path: str | Path, flag: str) -> End:
    """The network at ``path``, checked against its done.json; a TicketsError (one line) when it is not one."""
    net = Path(path).resolve()
    if not (net / "final.pt").is_file() or not (net / "done.json").is_file():
        raise TicketsError(f"{flag} {path} is not a trained network (no final.pt and done.json there); give a "
                           "network directory such as outputs/RUN/seed_0/round_0/ticket")
    run_dir = next((p for p in net.parents if (p / "config.yaml").is_file()), None)
    if run_dir is None:
        raise TicketsError(f"{flag} {path} is in no tickets run (no config.yaml above it); give a network "
                           "directory inside a run folder")
    damaged = RunStore(run_dir.parent, run_dir.name).damaged_files(net)
    if damaged:
        raise TicketsError(f"{flag} {path}: {', '.join(damaged)}; resume its run to train it again, or choose "
                           "another network")
    mask_path = _mask_path(net, run_dir)
    mask = torch_load(mask_path) if mask_path is not None else None
    if mask is not None and all(bool(keep.all()) for keep in mask.values()):
        mask = None
    return End(flag, net, run_dir, torch_load(net / "final.pt"), sha256_file(net / "final.pt"), mask_path, mask)


def _mask_path(net: Path, run_dir: Path) -> Path | None:
    for own in ("final_mask.pt", "mask.pt"):  # a supermask's final.pt is under its final_mask.pt
        if (net / own).is_file():
            return net / own
    if net.parent.name.startswith("round_") and (net.parent / "mask.pt").is_file():
        return net.parent / "mask.pt"
    found = COPY_DIR.search(net.relative_to(run_dir).as_posix())
    if found and (run_dir / found[1] / found[2] / "mask.pt").is_file():
        return run_dir / found[1] / found[2] / "mask.pt"
    return None


def check_pair(a: End, b: End, model_state: State) -> None:
    """Same architecture (state dict keys and shapes, also those of NET_A's config's model) and the same mask."""
    for end, other, what in ((a, model_state, "the model of NET_A's run config"), (b, a.state, "NET_A")):
        problem = _difference(end.state, other)
        if problem:
            raise TicketsError(f"{end.flag} {end.dir} is not the architecture of {what} ({problem}); connect two "
                               "networks of the same model")
    for end in (a, b):
        if end.mask is not None:
            revived = [n for n, keep in end.mask.items() if n in end.state and bool((end.state[n][~keep] != 0).any())]
            if revived:
                raise TicketsError(f"{end.flag} {end.dir}: its weights of {revived[0]} are not zero where mask "
                                   f"{end.mask_path} prunes them, so that is not its mask (a control with a mask "
                                   "of its own keeps it in its own mask.pt); connect networks whose masks are on file")
    if (a.mask is None) != (b.mask is None) or (a.mask is not None and not _same_mask(a.mask, b.mask)):
        describe = lambda e: "dense" if e.mask is None else f"the mask {e.mask_path}"  # noqa: E731
        raise TicketsError(f"NET_A and NET_B have different masks (NET_A: {describe(a)}; NET_B: {describe(b)}); "
                           "connect two networks trained under the same mask (a ticket and a control that keeps "
                           "it, such as reinit) or two dense networks")


def _difference(state: State, other: State) -> str | None:
    missing, extra = sorted(set(other) - set(state)), sorted(set(state) - set(other))
    if missing or extra:
        return f"{'lacks ' + missing[0] if missing else 'has ' + extra[0] + ' too'}"
    for name, tensor in other.items():
        if tuple(state[name].shape) != tuple(tensor.shape):
            return f"{name} is {tuple(state[name].shape)}, not {tuple(tensor.shape)}"
    return None


def _same_mask(m: dict, n: dict) -> bool:
    return set(m) == set(n) and all(torch.equal(m[k].bool(), n[k].bool()) for k in m)
