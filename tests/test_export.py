"""`tickets export`: every format gives the masked network's logits, dense keeps only surviving units,
load_exported round-trips, and unsupported combinations are one line with exit 2."""
import copy
import re
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from conftest import invoke, prune_tiny
from torch import nn

import tickets
from tickets import config as config_mod
from tickets.components import load_splits
from tickets.errors import TicketsError
from tickets.exporters import dense, export_ticket, load_exported
from tickets.exporters.common import model_reference
from tickets.exporters.sparse import SparseLinear
from tickets.plugins import registry
from tickets.store import RunStore

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-4


def one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in result.output, result.output
    return lines[0]


def structured_mask(model: nn.Module, keep: dict[str, int]) -> dict:
    """Keep ``keep[layer]`` units of a layer (largest L1 norm of their rows); the next layer loses what read
    the others."""
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    mask = {f"{n}.weight": torch.ones_like(m.weight, dtype=torch.bool) for n, m in layers}
    for (name, module), (after, _) in zip(layers, layers[1:]):
        if name in keep:
            score = module.weight.detach().abs().flatten(1).sum(1)
            pruned = score.argsort(descending=True)[keep[name]:]
            mask[f"{name}.weight"][pruned] = False
            reader = mask[f"{after}.weight"]
            reader.view(reader.shape[0], score.numel(), -1)[:, pruned] = False
    return mask


def magnitude_mask(state: dict, density: float) -> dict:
    mask = {}
    for name, weight in state.items():
        if name.endswith("weight") and weight.dim() >= 2:
            flat = weight.abs().flatten()
            keep = torch.zeros_like(flat, dtype=torch.bool)
            keep[flat.argsort(descending=True)[: round(density * flat.numel())]] = True
            mask[name] = keep.view_as(weight)
    return mask


def add_network(run_dir: Path, variant: str, state: dict, mask: dict, round_: int = 1) -> None:
    """A finished network of our own in the run: final.pt (masked weights zero), its own mask.pt, done.json."""
    store = RunStore(run_dir.parent, run_dir.name)
    folder = store.network_dir(0, round_, variant)
    folder.mkdir(parents=True)
    torch.save({k: v * mask[k] if k in mask else v for k, v in state.items()}, folder / "final.pt")
    torch.save(mask, folder / "mask.pt")
    store.mark_done(folder, {"seed": 0, "round": round_, "variant": variant})


def run_data(run_dir: Path):
    config = config_mod.from_dict(yaml.safe_load((run_dir / "config.yaml").read_text()))
    return config, load_splits(config, registry().get("datasets", config.data.dataset))


def masked_logits(run_dir: Path, variant: str, round_: int = 1) -> torch.Tensor:
    """Logits on the test split of the run's model with final.pt * mask.pt, computed here with plain torch."""
    config, splits = run_data(run_dir)
    net = run_dir / "seed_0" / f"round_{round_}" / variant
    mask_path = net / "mask.pt" if (net / "mask.pt").is_file() else net.parent / "mask.pt"
    state, mask = torch.load(net / "final.pt", weights_only=True), torch.load(mask_path, weights_only=True)
    model = registry().get("models", config.model.name)(splits.num_classes, splits.input_shape)
    model.load_state_dict({k: v * mask[k] if k in mask else v for k, v in state.items()})
    with torch.no_grad():
        return model.eval()(splits.test_x)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A tiny IMP run (round 1: ticket at 80%, random_prune with its own mask) plus two networks of ours in
    round 1: `structured` (78 of fc1's neurons, 50 of fc2's, on the dense net's weights) and `sparse5`
    (5% of each layer's weights by magnitude)."""
    run_dir = prune_tiny(tmp_path_factory.mktemp("export"), "lenet", "--rounds", "1", "--controls", "random_prune")
    state = torch.load(run_dir / "seed_0" / "round_0" / "ticket" / "final.pt", weights_only=True)
    config, splits = run_data(run_dir)
    model = registry().get("models", config.model.name)(splits.num_classes, splits.input_shape)
    model.load_state_dict(state)
    add_network(run_dir, "structured", state, structured_mask(model, {"fc1": 78, "fc2": 50}))
    add_network(run_dir, "sparse5", state, magnitude_mask(state, 0.05))
    return run_dir


CASES = [("structured", "dense"), ("structured", "sparse"), ("structured", "torch-prune"), ("structured", "onnx"),
         ("sparse5", "sparse"), ("sparse5", "torch-prune"), ("sparse5", "onnx"),
         ("ticket", "sparse"), ("ticket", "torch-prune"), ("random_prune", "sparse")]


@pytest.mark.parametrize("variant,format", CASES)
def test_every_format_gives_the_masked_logits(run, tmp_path, variant, format):
    out = tmp_path / f"{variant}.{format}"
    result = invoke("export", run, "--seed", 0, "--round", 1, "--variant", variant, "--format", format, "--out", out)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"wrote {out} ({format}")
    _, splits = run_data(run)
    with torch.no_grad():
        logits = load_exported(out)(splits.test_x)
    assert (logits - masked_logits(run, variant)).abs().max() <= TOLERANCE


def test_dense_has_only_the_surviving_units_parameters(run, tmp_path):
    done = tickets.export(run, seed=0, round=1, variant="structured", format="dense", out=tmp_path / "d.pt")
    net = load_exported(done.path)
    assert isinstance(net, nn.Sequential)
    linear = [m for m in net if isinstance(m, nn.Linear)]
    assert [tuple(m.weight.shape) for m in linear] == [(78, 784), (50, 78), (10, 50)]
    assert dense.parameter_count(net) == 784 * 78 + 78 + 78 * 50 + 50 + 50 * 10 + 10
    assert "fc1 300->78, fc2 100->50, output 10->10" in done.description


def test_sparse_computes_its_sparse_layers_in_csr(run, tmp_path):
    out = tmp_path / "s.pt"
    tickets.export(run, seed=0, round=1, variant="sparse5", format="sparse", out=out)
    net = load_exported(out)
    mask = torch.load(run / "seed_0" / "round_1" / "sparse5" / "mask.pt", weights_only=True)
    assert isinstance(net.fc1, SparseLinear) and isinstance(net.fc2, SparseLinear)
    assert net.fc1.weight.layout == torch.sparse_csr and net.fc1.weight._nnz() == int(mask["fc1.weight"].sum())
    assert type(net.output) is nn.Linear  # 1,000 weights: below sparse.MIN_WEIGHTS, stays dense


def test_torch_prune_registers_the_masks_and_keeps_pruned_weights_zero_in_training(run, tmp_path):
    out = tmp_path / "p.pt"
    tickets.export(run, seed=0, round=1, variant="random_prune", format="torch-prune", out=out)
    net = load_exported(out)
    own = torch.load(run / "seed_0" / "round_1" / "random_prune" / "mask.pt", weights_only=True)
    for name, keep in own.items():
        module = net.get_submodule(name.rpartition(".")[0])
        assert isinstance(module.weight_orig, nn.Parameter) and torch.equal(module.weight_mask, keep.float())
    _, splits = run_data(run)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    net.train()
    nn.functional.cross_entropy(net(splits.train_x[:64]), splits.train_y[:64]).backward()
    optimizer.step()
    net(splits.train_x[:1])  # the pre-forward hook recomputes weight = weight_orig * weight_mask
    assert all(int(net.get_submodule(n.rpartition(".")[0]).weight[~k].abs().sum()) == 0 for n, k in own.items())


def test_load_exported_round_trips_the_saved_weights(run, tmp_path):
    for format in ("dense", "torch-prune"):
        out = tmp_path / f"r.{format}"
        tickets.export(run, seed=0, round=1, variant="structured", format=format, out=out)
        saved = torch.load(out, weights_only=True)["state_dict"]
        loaded = tickets.load_exported(out).state_dict()
        assert loaded.keys() == saved.keys()
        assert all(torch.equal(loaded[k], saved[k].to(loaded[k].dtype)) for k in saved)


def test_the_readme_recipe_rebuilds_a_dense_export_with_torch_alone(run, tmp_path):
    out = tmp_path / "ticket.pt"
    tickets.export(run, seed=0, round=1, variant="structured", format="dense", out=out)
    readme = (ROOT / "README.md").read_text()
    recipe = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "saved[\"layers\"]" in b)
    scope = {}
    exec(textwrap.dedent(recipe).replace('"ticket.pt"', repr(str(out))), scope)  # the README's code, on our file
    _, splits = run_data(run)
    with torch.no_grad():
        assert (scope["net"](splits.test_x) - masked_logits(run, "structured")).abs().max() <= TOLERANCE


def test_a_conv_ticket_exports_smaller_in_every_format(tmp_path):
    """Conv-4 at initialization with a structured mask (filters of every conv, neurons of fc1 and fc2)."""
    torch.manual_seed(0)
    shape = (1, 28, 28)
    model = registry().get("models", "conv4")(10, shape).eval()
    keep = {"features.0": 20, "features.2": 30, "features.5": 40, "features.7": 50, "fc1": 60, "fc2": 70}
    mask = structured_mask(model, keep)
    ticket = copy.deepcopy(model)  # the masked network; model keeps nonzero pruned weights, which export masks
    for name, param in ticket.named_parameters():
        param.data.mul_(mask.get(name, torch.ones(())))
    x = torch.randn(16, *shape)
    reference = model_reference("conv4", {}, 10, shape)
    source = {"run": "test", "seed": 0, "round": 0, "variant": "ticket"}
    for format in ("dense", "sparse", "torch-prune", "onnx"):
        done = export_ticket(model, mask, format=format, out=tmp_path / format, reference=reference, inputs=x,
                             source=source)
        with torch.no_grad():
            assert (load_exported(done.path)(x) - ticket(x)).abs().max() <= TOLERANCE
    # onnx holds the smaller network (the full Conv-4 graph would be about 10x the dense file)
    assert (tmp_path / "onnx").stat().st_size < 1.1 * (tmp_path / "dense").stat().st_size
    net = load_exported(tmp_path / "dense")
    convs = [m for m in net if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.in_channels) for c in convs] == [(20, 1), (30, 20), (40, 30), (50, 40)]
    expected = (20 * 9 + 20) + (30 * 20 * 9 + 30) + (40 * 30 * 9 + 40) + (50 * 40 * 9 + 50) \
        + (60 * 50 * 7 * 7 + 60) + (70 * 60 + 70) + (10 * 70 + 10)
    assert dense.parameter_count(net) == expected


def test_a_vgg_ticket_loses_the_batchnorm_channels_of_its_pruned_filters():
    torch.manual_seed(0)
    model = registry().get("models", "vgg11")(10, (3, 32, 32)).eval()
    for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):  # statistics of a trained net
        bn.running_mean.normal_(), bn.running_var.uniform_(0.5, 2), bn.weight.data.normal_(), bn.bias.data.normal_()
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    mask = structured_mask(model, {name: 16 for name in convs})
    for name, param in model.named_parameters():
        param.data.mul_(mask.get(name, torch.ones(())))
    x = torch.randn(16, 3, 32, 32)
    _, net, widths = dense.shrink(model, mask, (3, 32, 32))
    assert all(widths[name] == [model.get_submodule(name).out_channels, 16] for name in convs)
    assert all(m.num_features == 16 and m.running_mean.shape == (16,) for m in net if isinstance(m, nn.BatchNorm2d))
    with torch.no_grad():
        assert (net(x) - model(x)).abs().max() <= TOLERANCE


def test_dense_removes_exactly_the_units_nothing_downstream_sees():
    """fc1 rows 0-9 are pruned; fc2 still reads units 0-4. Of those, a positive bias is a constant signal
    (kept), a negative one is zero after ReLU (removed); units 5-9 are not read (removed)."""
    torch.manual_seed(0)
    model = registry().get("models", "lenet_300_100")(10, (1, 28, 28)).eval()
    mask = {n: torch.ones_like(p, dtype=torch.bool) for n, p in model.named_parameters() if p.dim() == 2}
    mask["fc1.weight"][:10] = False
    mask["fc2.weight"][:, 5:10] = False
    with torch.no_grad():
        model.fc1.weight[:10] = 0
        model.fc2.weight[:, 5:10] = 0
        model.fc1.bias[:3], model.fc1.bias[3:10] = 0.5, -0.5
    _, net, widths = dense.shrink(model, mask, (1, 28, 28))
    assert widths["fc1"] == [300, 293]  # units 0-2 kept, 3-9 removed
    x = torch.randn(32, 1, 28, 28)
    with torch.no_grad():
        assert (net(x) - model(x)).abs().max() <= TOLERANCE


# unsupported combinations: one line, exit 2 ---------------------------------------------------------------
def test_dense_of_an_unstructured_ticket_says_to_use_sparse_or_torch_prune(run, tmp_path):
    line = one_error_line(invoke("export", run, "--seed", 0, "--round", 1, "--format", "dense", "--out",
                                 tmp_path / "x.pt"))
    assert "structured" in line and "sparse" in line and "torch-prune" in line
    assert not (tmp_path / "x.pt").exists()


def test_dense_of_a_resnet_is_one_line(run, tmp_path):
    fake = tmp_path / "resnet"
    fake.mkdir()
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["model"]["name"] = "resnet20"
    (fake / "config.yaml").write_text(yaml.safe_dump(config))
    model = registry().get("models", "resnet20")(10, (1, 28, 28))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    add_network(fake, "ticket", state, {n: torch.ones_like(p, dtype=torch.bool)
                                        for n, p in model.named_parameters() if p.dim() > 1}, round_=0)
    line = one_error_line(invoke("export", fake, "--seed", 0, "--round", 0, "--format", "dense", "--out",
                                 tmp_path / "x.pt"))
    assert "ResNets" in line and "sparse" in line
    with pytest.raises(TicketsError, match="does not know the structure of Sequential"):
        dense.shrink(nn.Sequential(nn.Linear(4, 4)), {}, (1, 2, 2))


@pytest.mark.parametrize("args,expected", [
    (["--seed", 7, "--round", 1], "has no seed 7 (its seeds: 0)"),
    (["--seed", 0, "--round", 9], "has no round 9 (its rounds: 0, 1)"),
    (["--seed", 0, "--round", 1, "--variant", "reinit"], "no trained network 'reinit' (trained: random_prune, "),
    (["--seed", 0, "--round", 1, "--format", "pickle"], "unknown export format 'pickle'"),
])
def test_a_missing_network_or_format_is_one_line(run, tmp_path, args, expected):
    args = args if "--format" in args else [*args, "--format", "sparse"]
    assert expected in one_error_line(invoke("export", run, *args, "--out", tmp_path / "x.pt"))


def test_out_is_replaced_atomically(run, tmp_path, monkeypatch):
    out = tmp_path / "ticket.pt"
    out.write_bytes(b"an older file")
    args = ["export", run, "--seed", 0, "--round", 1, "--format", "sparse", "--out", out]
    monkeypatch.setattr("tickets.store.os.replace", lambda *a: (_ for _ in ()).throw(OSError(28, "No space")))
    assert invoke(*args).exit_code == 5  # the rename failed: the old file is whole, no temporary file is left
    assert out.read_bytes() == b"an older file" and sorted(tmp_path.iterdir()) == [out]
    monkeypatch.undo()
    assert invoke(*args).exit_code == 0
    assert sorted(tmp_path.iterdir()) == [out] and isinstance(load_exported(out), nn.Module)


def test_load_exported_of_another_file_is_a_tickets_error(tmp_path):
    for content, expected in ((b"not a model", "neither a torch file nor an ONNX model"), (None, "torch file, but")):
        path = tmp_path / "file"
        torch.save({"weights": torch.zeros(2)}, path) if content is None else path.write_bytes(content)
        with pytest.raises(TicketsError, match=expected):
            load_exported(path)
    with pytest.raises(TicketsError, match="does not exist"):
        load_exported(tmp_path / "missing.pt")
