"""Controls on a small network: each does what its formula says, and none modifies the ticket."""
import pytest
import torch
from torch import nn

from tickets.builtin.initializers import kaiming_normal
from tickets.data import Splits
from tickets.masks import Mask, prunable_names
from tickets.plugins import registry
from tickets.ticket import ControlContext, Ticket, clone_state, initialize_
from tickets.training import train_network

CONTROLS = ["reinit", "random_prune", "reshuffle", "signed_reinit", "signed_constant", "rand_signed_constant",
            "freeze_pruned"]


def make_net():
    return nn.Sequential(nn.Linear(8, 12), nn.ReLU(), nn.Linear(12, 3))


def fresh(generator):
    net = make_net()
    initialize_(net, kaiming_normal, generator)
    return clone_state(net)


@pytest.fixture
def ticket():
    torch.manual_seed(0)
    net = make_net()
    state = fresh(torch.Generator().manual_seed(0))
    state = {k: v + 0.1 if k.endswith("bias") else v for k, v in state.items()}  # nonzero biases, to see them kept
    mask = Mask({n: torch.rand(state[n].shape, generator=torch.Generator().manual_seed(1)) < 0.4
                 for n in prunable_names(net)})
    return Ticket(mask, state, 0)


# theta_0 and the rewind point differ from each other and from the ticket's own starting weights, so a
# control that reads the wrong ones fails (in a run, ticket.state is the rewind point's weights).
INIT, REWIND = fresh(torch.Generator().manual_seed(10)), fresh(torch.Generator().manual_seed(11))


def context(ticket, seed=5):
    return ControlContext(seed=0, round=1, generator=torch.Generator().manual_seed(seed), init=INIT,
                          rewind=REWIND, prunable=list(ticket.mask.tensors), initialize=fresh)


def train_briefly(net_ticket):
    """Train a derived ticket for 20 SGD iterations with momentum and weight decay; its final state."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(300, 8, generator=g), torch.randint(0, 3, (300,), generator=g)
    splits = Splits(x[:200], y[:200], x[200:250], y[200:250], x[250:], y[250:], num_classes=3)
    make = lambda params: torch.optim.SGD(params, lr=0.5, momentum=0.9, weight_decay=0.1)  # noqa: E731
    return train_network(make_net(), net_ticket, make, splits, end_iteration=20, eval_every=10, batch_size=20,
                         data_seed=0).final_state


def derive(name, ticket, seed=5):
    before = {k: v.clone() for k, v in ticket.state.items()}
    out = registry().get("controls", name)(ticket, context(ticket, seed))
    assert all(torch.equal(before[k], ticket.state[k]) for k in before), f"{name} modified the ticket"
    return out


def test_initialize_gives_each_weight_its_name_and_zero_biases():
    seen = []
    net = make_net()
    initialize_(net, lambda p, name, generator: seen.append(name), torch.Generator())
    assert seen == ["0.weight", "2.weight"]
    assert all((p == 0).all() for n, p in net.named_parameters() if n.endswith("bias"))


def test_every_control_is_registered_with_a_description():
    entries = registry().entries["controls"]
    for name in CONTROLS:
        assert entries[name].description, name


@pytest.mark.parametrize("name", CONTROLS)
def test_controls_are_seeded(name, ticket):
    a, b, c = derive(name, ticket, 5), derive(name, ticket, 5), derive(name, ticket, 6)
    assert a.mask == b.mask and all(torch.equal(a.state[k], b.state[k]) for k in a.state)
    if name not in ("signed_constant", "freeze_pruned"):  # the only deterministic ones
        assert a.mask != c.mask or any(not torch.equal(a.state[k], c.state[k]) for k in a.state)


@pytest.mark.parametrize("name", ["reshuffle", "signed_reinit", "signed_constant", "rand_signed_constant"])
def test_weight_controls_keep_the_mask_biases_and_zero_pruned(name, ticket):
    out = derive(name, ticket)
    assert out.mask == ticket.mask and out.pruned_values is None and out.start_iteration == ticket.start_iteration
    for k in ("0.bias", "2.bias"):
        assert torch.equal(out.state[k], ticket.state[k])
    final = train_briefly(out)
    for n, keep in ticket.mask.tensors.items():
        assert (out.state[n][~keep] != 0).all()  # the control leaves values there; training zeroes them
        assert (final[n][~keep] == 0).all() and (final[n][keep] != 0).all()


def test_reinit_keeps_the_mask_with_fresh_weights(ticket):
    frozen = ticket.with_(pruned_values={n: torch.ones_like(ticket.state[n]) for n in ticket.mask.tensors})
    assert derive("reinit", frozen).pruned_values is None  # frozen values belonged to the old weights
    out = derive("reinit", ticket)
    assert out.mask == ticket.mask
    assert torch.equal(out.state["0.weight"], fresh(torch.Generator().manual_seed(5))["0.weight"])
    assert not torch.equal(out.state["0.weight"], ticket.state["0.weight"])


def test_random_prune_keeps_per_layer_counts_and_weights(ticket):
    out = derive("random_prune", ticket)
    assert out.mask.counts() == ticket.mask.counts() and out.mask != ticket.mask
    assert out.state is ticket.state or all(torch.equal(out.state[k], ticket.state[k]) for k in ticket.state)


def test_reshuffle_permutes_the_kept_values_within_each_layer(ticket):
    out = derive("reshuffle", ticket)
    for name, keep in ticket.mask.tensors.items():
        old, new = ticket.state[name], out.state[name]
        assert torch.equal(old[keep].sort().values, new[keep].sort().values)  # same multiset per layer
        assert not torch.equal(old[keep], new[keep])  # in other places
        assert torch.equal(old[~keep], new[~keep])  # pruned entries untouched (the mask zeroes them)


def test_signed_reinit_keeps_signs_with_fresh_magnitudes(ticket):
    out = derive("signed_reinit", ticket)
    magnitudes = fresh(torch.Generator().manual_seed(5))
    for name in ticket.mask.tensors:
        assert torch.equal(torch.sign(out.state[name]), torch.sign(ticket.state[name]))
        assert torch.equal(out.state[name].abs(), magnitudes[name].abs())
        assert not torch.equal(out.state[name].abs(), ticket.state[name].abs())


def test_signed_constant_is_plus_minus_the_layer_std_with_initial_signs(ticket):
    """sign(ticket's starting weight) * std of the layer at theta_0 (Zhou et al.: the initialization's std)."""
    out = derive("signed_constant", ticket)
    for name in ticket.mask.tensors:
        std = INIT[name].std().item()
        assert torch.allclose(out.state[name].abs(), torch.full_like(out.state[name], std))
        assert torch.equal(torch.sign(out.state[name]), torch.sign(ticket.state[name]))


def test_a_zero_starting_weight_gets_the_plus_sign(ticket):
    zeroed = ticket.with_(state={**ticket.state, "0.weight": torch.zeros_like(ticket.state["0.weight"])})
    out = derive("signed_constant", zeroed)
    assert (out.state["0.weight"] > 0).all()


def test_rand_signed_constant_is_plus_minus_the_layer_std_with_random_signs(ticket):
    out = derive("rand_signed_constant", ticket)
    agree = []
    for name in ticket.mask.tensors:
        std = INIT[name].std().item()
        assert torch.allclose(out.state[name].abs(), torch.full_like(out.state[name], std))
        agree.append((torch.sign(out.state[name]) == torch.sign(ticket.state[name])).float().flatten())
    assert 0.3 < torch.cat(agree).mean().item() < 0.7  # signs independent of the initial ones


def test_freeze_pruned_keeps_pruned_weights_exactly_at_their_initial_values_in_training(ticket):
    out = derive("freeze_pruned", ticket)
    assert out.mask == ticket.mask and all(torch.equal(out.pruned_values[n], ticket.state[n])
                                           for n in out.pruned_values)
    final_state = train_briefly(out)
    for name, keep in ticket.mask.tensors.items():
        final, start = final_state[name], ticket.state[name]
        assert torch.equal(final[~keep], start[~keep])  # frozen, not zero, despite momentum and decay
        assert not torch.equal(final[keep], start[keep])  # the kept weights trained
        assert (final[~keep] != 0).all()
