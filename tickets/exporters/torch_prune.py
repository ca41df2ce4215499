"""``torch-prune``: the run's architecture with ``torch.nn.utils.prune`` masks registered, to train on.

Every masked weight ``W`` of the network becomes ``W_orig`` (a parameter: the ticket's trained
weights) times ``W_mask`` (a buffer: the mask as 0/1 floats), through
``prune.custom_from_mask``; gradients through the mask are zero, so a pruned weight stays zero
in any torch or Lightning training loop. Biases and normalization parameters are not masked.

Saved as a state_dict plus a recipe, not a pickled module: the file is ``torch.save`` of a plain
dict (``torch.load(path, weights_only=True)`` reads it) with ``model`` (the architecture, see
common.build_reference) and ``state_dict`` (keys ``fc1.weight_orig``, ``fc1.weight_mask``,
``fc1.bias``, ...; the masks as bool tensors). A pickled module could only be loaded with
``weights_only=False`` (which runs code from the file) and would break whenever tickets' classes
move. The recipe (what
:func:`load` does, and the README shows): build the architecture, load the weights, then call
``prune.custom_from_mask(module, "weight", mask)`` for every ``*.weight_mask`` entry.
"""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils import prune

FORMAT = "tickets-torch-prune"
SUFFIX_ORIG, SUFFIX_MASK = "_orig", "_mask"


def convert(model: nn.Module, mask: dict) -> nn.Module:
    """A copy of ``model`` (its masked weights zero) with every mask registered by ``prune.custom_from_mask``."""
    model = copy.deepcopy(model).eval()
    for name, keep in mask.items():
        module_name, _, param = name.rpartition(".")
        prune.custom_from_mask(model.get_submodule(module_name), param, keep)
    return model


def contents(model: nn.Module) -> dict:
    """``state_dict`` of a converted network, its masks as bool tensors (a quarter of float32's bytes)."""
    state = model.state_dict()
    return {"state_dict": {k: v.to(torch.bool) if k.endswith(SUFFIX_MASK) else v for k, v in state.items()}}


def load(saved: dict, model: nn.Module) -> nn.Module:
    """``model`` (the run's architecture, fresh) with the file's weights and masks registered, in eval mode."""
    state = saved["state_dict"]
    masks = {key[:-len(SUFFIX_MASK)]: value for key, value in state.items() if key.endswith(SUFFIX_MASK)}
    plain = {key: value for key, value in state.items() if not key.endswith(SUFFIX_MASK)}
    plain = {(key[:-len(SUFFIX_ORIG)] if key.endswith(SUFFIX_ORIG) and key[:-len(SUFFIX_ORIG)] in masks else key):
             value for key, value in plain.items()}
    model.load_state_dict(plain)
    for name, keep in masks.items():
        module_name, _, param = name.rpartition(".")
        prune.custom_from_mask(model.get_submodule(module_name), param, keep.to(torch.bool))
    return model.eval()
