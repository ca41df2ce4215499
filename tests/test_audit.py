"""The audit's corrections (issue 17): OpenLTH's ResNet-20 pruning and BatchNorm init, run names kept,
edge-popup's CIFAR schedule. Each expected value is computed here without tickets' own code path."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from tickets.builtin.models import resnet20, vgg
from tickets.config import RunConfig, build_config, default_name, fingerprint
from tickets.errors import TicketsError
from tickets.masks import Mask
from tickets.plugins import registry
from tickets.ticket import initialize_


def kaiming(param, name, generator):
    nn.init.kaiming_normal_(param, mode="fan_in", nonlinearity="relu", generator=generator)


def reference_theta0(model: nn.Module, seed: int, uniform_scales: bool) -> dict:
    """theta_0 drawn with torch alone: Kaiming-normal for each weight of ndim >= 2 in parameter
    order, then (uniform_scales) one U[0, 1) vector per BatchNorm in module order; biases and
    shifts 0, BatchNorm scales otherwise 1, running statistics as a fresh BatchNorm has them."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, p in model.named_parameters():
        if p.dim() >= 2:
            t = torch.empty(p.shape)
            std = math.sqrt(2.0 / p[0].numel())
            out[name] = t.normal_(0.0, std, generator=g)  # N(0, 2 / fan_in), as kaiming_normal_ draws it
        elif name.endswith("bias"):
            out[name] = torch.zeros(p.shape)
        else:
            out[name] = torch.ones(p.shape)
    if uniform_scales:
        for name, m in model.named_modules():
            if isinstance(m, nn.BatchNorm2d):
                out[f"{name}.weight"] = torch.rand(m.num_features, generator=g)
    for name, m in model.named_modules():
        if isinstance(m, nn.BatchNorm2d):
            out[f"{name}.running_mean"] = torch.zeros(m.num_features)
            out[f"{name}.running_var"] = torch.ones(m.num_features)
            out[f"{name}.num_batches_tracked"] = torch.tensor(0)
    return out


def drawn(make, seed, **kwargs) -> dict:
    model = make()
    initialize_(model, kaiming, torch.Generator().manual_seed(seed), **kwargs)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def bn_names(model):
    return [n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]


MAKERS = {"resnet20": lambda: resnet20(10, (3, 32, 32)), "vgg11": lambda: vgg(10, (3, 32, 32), depth=11)}


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_default_init_is_the_torch_drawn_reference_bit_for_bit(name):
    make = MAKERS[name]
    got, want = drawn(make, 3), reference_theta0(make(), 3, uniform_scales=False)
    assert got.keys() == want.keys()
    for key in want:
        assert torch.equal(got[key], want[key].to(got[key].dtype)), key
    explicit = drawn(make, 3, norm_init="default")
    assert all(torch.equal(explicit[k], got[k]) for k in got)


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_uniform_norm_init_matches_the_reference_and_leaves_the_weights(name):
    make = MAKERS[name]
    got, want = drawn(make, 7, norm_init="uniform"), reference_theta0(make(), 7, uniform_scales=True)
    for key in want:
        assert torch.equal(got[key], want[key].to(got[key].dtype)), key
    default = drawn(make, 7)
    norms = bn_names(make())
    scales = torch.cat([got[f"{n}.weight"] for n in norms])
    assert 0 <= scales.min() and scales.max() < 1 and not torch.equal(scales, torch.ones_like(scales))
    assert scales.std() > 0.2  # U[0, 1) has sd 0.289; a constant would give 0
    assert all(torch.equal(got[f"{n}.bias"], torch.zeros_like(got[f"{n}.bias"])) for n in norms)
    # everything but the scales is what the default draws: the scales come after every weight
    assert [k for k in default if not torch.equal(default[k], got[k])] == [f"{n}.weight" for n in norms]
    again, other = drawn(make, 7, norm_init="uniform"), drawn(make, 8, norm_init="uniform")
    assert all(torch.equal(again[k], got[k]) for k in got)
    assert not torch.equal(other[f"{norms[0]}.weight"], got[f"{norms[0]}.weight"])


def test_uniform_norm_init_leaves_a_network_without_normalization_unchanged():
    make = lambda: nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 2))  # noqa: E731
    a, b = drawn(make, 1), drawn(make, 1, norm_init="uniform")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_unknown_norm_init_is_a_one_line_error_naming_the_key():
    with pytest.raises(TicketsError, match=r"model\.norm_init.*use one of default, uniform"):
        initialize_(resnet20(10, (3, 32, 32)), kaiming, torch.Generator(), norm_init="ones")
    with pytest.raises(TicketsError, match=r"model\.norm_init.*use one of default, uniform") as error:
        build_config(None, sets=["model.norm_init=ones"])
    assert "\n" not in str(error.value)


# Fingerprints of these configs as they were before model.norm_init existed: their runs must keep
# their names and resume (values printed by the code of commit ccc5596).
FINGERPRINTS_BEFORE = {None: "32a16928", "lenet_digits": "4dde20e8", "resnet20_digits": "3f32e65b",
                       "zhou_lenet_digits": "c390dfda", "vgg16_cifar10": "8e2fefb0", "resnet20_cifar10": "605edb28"}


@pytest.mark.parametrize("name", list(FINGERPRINTS_BEFORE), ids=str)
def test_fingerprints_of_existing_settings_are_unchanged(name):
    config = RunConfig() if name is None else build_config(name)
    assert fingerprint(config) == FINGERPRINTS_BEFORE[name]


def test_norm_init_uniform_changes_the_run_name():
    base = build_config("resnet20_digits")
    uniform = build_config("resnet20_digits", sets=["model.norm_init=uniform"])
    assert uniform.model.norm_init == "uniform"
    assert fingerprint(uniform) != fingerprint(base) and default_name(uniform) != default_name(base)
    assert build_config("resnet20_cifar10_openlth").model.norm_init == "uniform"


def global_keep(weights: dict, names: list, fraction: float) -> dict:
    """OpenLTH-style global magnitude pruning done in numpy: keep the largest |w| of the pooled names,
    pruning floor(n * fraction + 0.5) of the n pooled weights (tickets' count; no ties here)."""
    pooled = np.concatenate([weights[n].numpy().ravel() for n in names])
    n_keep = pooled.size - int(np.floor(pooled.size * fraction + 0.5))
    threshold = np.sort(np.abs(pooled))[::-1][n_keep - 1]
    return {n: torch.from_numpy(np.abs(weights[n].numpy()) >= threshold) for n in names}


@pytest.mark.parametrize("config_name, output_pruned",
                         [("resnet20_cifar10_openlth", True), ("resnet20_cifar10", False)])
def test_resnet20_output_layer_pruning(config_name, output_pruned):
    prune = build_config(config_name).prune
    model = resnet20(10, (3, 32, 32))
    initialize_(model, kaiming, torch.Generator().manual_seed(0))
    weights = {n: p.detach().clone() for n, p in model.named_parameters() if p.dim() >= 2}
    assert "output.weight" in weights  # OpenLTH's fc.weight
    mask = Mask.ones_for(model).prune({n: w.abs() for n, w in weights.items()}, prune.fraction,
                                      prune.layer_fractions, prune.scope)
    pooled = list(weights) if output_pruned else [n for n in weights if n != "output.weight"]
    want = global_keep(weights, pooled, prune.fraction)
    for name in pooled:
        assert torch.equal(mask.tensors[name], want[name]), name
    kept_output = mask.count("output.weight")
    assert (kept_output < 640) if output_pruned else (kept_output == 640)


def test_edge_popup_cifar_config_has_ramanujans_cosine_schedule_and_augmentation():
    from tickets.components import make_schedule
    from tickets.schedules import lr_factor

    config = build_config("edge_popup_conv4_cifar10")
    assert (config.data.augment == ["crop", "flip"]
            and config.data.augment_options.get("crop", {}).get("padding", 4) == 4)
    schedule = make_schedule(config, 45_000)
    total = 100 * (45_000 // 128)  # 351 full batches per epoch
    assert schedule.total == total
    factor = lr_factor(config, registry().get("schedules", config.train.schedule), schedule.total, schedule.per_epoch)
    for t in (0, total // 4, total // 2, total - 1):
        assert config.train.lr * factor(t) == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * t / total)))


def test_a_run_draws_its_theta0_with_the_configured_norm_init(tmp_path):
    from tickets.components import RunContext, fresh_state
    from tickets.store import RunStore

    config = build_config("resnet20_digits", sets=["model.norm_init=uniform"])
    context = RunContext.create(config, registry(), RunStore(tmp_path, "run"))
    norms = bn_names(context.new_model())
    for state in (context.initial_state(0),
                  fresh_state(context, torch.Generator().manual_seed(1))):  # theta_0, reinit's
        scales = torch.cat([state[f"{n}.weight"] for n in norms])
        assert 0 <= scales.min() and scales.max() < 1 and not torch.equal(scales, torch.ones_like(scales))
