"""The built-in models: shapes, layer names, parameter counts, options."""
import pytest
import torch
from torch import nn

from tickets.builtin.models import register_models
from tickets.errors import TicketsError


def registered():
    found = {}
    register_models(lambda name, obj, description=None: found.__setitem__(name, (obj, description)))
    return found


MODELS = registered()

# name -> the input shape it is meant for
EXPECTED = {
    "lenet_300_100": (1, 28, 28),
    "conv2": (3, 32, 32),
    "conv4": (3, 32, 32),
    "conv6": (3, 32, 32),
    "resnet20": (3, 32, 32),
    "vgg": (3, 32, 32),
    "vgg11": (3, 32, 32),
    "vgg16": (3, 32, 32),
    "vgg19": (3, 32, 32),
}


def make(name, num_classes=10, shape=None, **options):
    return MODELS[name][0](num_classes, shape or EXPECTED[name], **options)


def prunable(model):
    """name -> shape of every conv/linear weight."""
    return {f"{n}.weight": tuple(m.weight.shape) for n, m in model.named_modules()
            if isinstance(m, (nn.Linear, nn.Conv2d))}


def weight_count(model):
    return sum(torch.Size(s).numel() for s in prunable(model).values())


def test_all_registered_with_descriptions():
    assert set(MODELS) == set(EXPECTED)
    for name, (_, description) in MODELS.items():
        assert description and "\n" not in description, name


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_forward_and_output_layer(name):
    model = make(name, num_classes=7).eval()
    with torch.no_grad():
        logits = model(torch.randn(3, *EXPECTED[name]))
    assert logits.shape == (3, 7)
    assert isinstance(model.output, nn.Linear) and model.output.out_features == 7
    assert "output.weight" in prunable(model)


@pytest.mark.parametrize("name", ["lenet_300_100", "conv2", "conv4", "conv6", "resnet20", "vgg11"])
def test_other_input_shapes(name):
    shape = (3, 32, 32) if EXPECTED[name][0] == 1 else (1, 28, 28)
    model = make(name, shape=shape).eval()
    with torch.no_grad():
        assert model(torch.zeros(2, *shape)).shape == (2, 10)


def test_lenet_layers_and_count():
    model = make("lenet_300_100")
    assert prunable(model) == {"fc1.weight": (300, 784), "fc2.weight": (100, 300), "output.weight": (10, 100)}
    assert weight_count(model) == 266_200  # the paper's 266K


def test_conv_layers_and_counts():
    model = make("conv2")
    assert prunable(model) == {
        "features.0.weight": (64, 3, 3, 3), "features.2.weight": (64, 64, 3, 3),
        "fc1.weight": (256, 64 * 16 * 16), "fc2.weight": (256, 256), "output.weight": (10, 256),
    }
    assert weight_count(model) == pytest.approx(4.3e6, rel=0.01)  # the paper's 4.3M
    assert weight_count(make("conv4")) == pytest.approx(2.4e6, rel=0.02)  # the paper's 2.4M
    assert ([s[0] for n, s in prunable(make("conv6")).items() if n.startswith("features")]
            == [64, 64, 128, 128, 256, 256])


def test_resnet20():
    model = make("resnet20")
    shapes = prunable(model)
    convs = [s for s in shapes.values() if len(s) == 4]
    assert len(convs) == 1 + 18 + 2  # stem, 9 blocks x 2, two projection shortcuts
    assert not any(isinstance(m, nn.Conv2d) and m.bias is not None for m in model.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert weight_count(model) == pytest.approx(271e3, rel=0.01)  # Frankle & Carbin's 271K
    assert shapes["output.weight"] == (10, 64)
    assert make("resnet20", width=2).output.in_features == 128


def test_vgg_depths():
    convs = {d: sum(len(s) == 4 for s in prunable(make("vgg", depth=d)).values()) for d in (11, 13, 16, 19)}
    assert convs == {11: 8, 13: 10, 16: 13, 19: 16}
    assert weight_count(make("vgg19")) == pytest.approx(20e6, rel=0.01)  # the paper's 20M
    assert weight_count(make("vgg16")) == weight_count(make("vgg"))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_unknown_option_is_type_error(name):
    with pytest.raises(TypeError):
        make(name, no_such_option=1)


def test_bad_option_values():
    with pytest.raises(TicketsError, match="depth"):
        make("vgg", depth=12)
    with pytest.raises(TicketsError, match="width"):
        make("resnet20", width=0)
    with pytest.raises(TicketsError, match="input shape"):
        make("conv6", shape=(3, 4, 4))


def test_default_init_uses_only_the_global_rng():
    torch.manual_seed(0)
    a = make("conv2").state_dict()
    torch.manual_seed(0)
    b = make("conv2").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


# OpenLTH's VGG plans (models/cifar_vgg.py): four max-pools; the last conv group is average-pooled.
# (VGG-11 only, to stay fast: every depth shares the code, and test_vgg_has_four_max_pools checks each.)
OPENLTH_VGG_PLANS = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
}


class OpenLTHVGG(nn.Module):
    """OpenLTH's cifar_vgg written out: conv-BN-ReLU modules and 2x2 max-pools, then
    AvgPool2d(2) and fc (convs without bias, as tickets' are: a bias before BatchNorm cancels)."""

    def __init__(self, plan):
        super().__init__()
        layers, filters = [], 3
        for spec in plan:
            if spec == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(filters, spec, 3, padding=1, bias=False), nn.BatchNorm2d(spec), nn.ReLU()]
                filters = spec
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(512, 10)

    def forward(self, x):
        return self.fc(nn.AvgPool2d(2)(self.layers(x)).view(x.shape[0], -1))


@pytest.mark.parametrize("depth", sorted(OPENLTH_VGG_PLANS))
def test_vgg_is_openlths_network(depth):
    ours, theirs = make("vgg", depth=depth), OpenLTHVGG(OPENLTH_VGG_PLANS[depth])
    assert sum(isinstance(m, nn.MaxPool2d) for m in ours.modules()) == 4
    mine, other = ours.state_dict(), theirs.state_dict()
    assert [v.shape for v in mine.values()] == [v.shape for v in other.values()]
    theirs.load_state_dict(dict(zip(other, mine.values())))
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for mode in ("train", "eval"):
        ours.train(mode == "train"), theirs.train(mode == "train")
        with torch.no_grad():
            assert torch.allclose(ours(x), theirs(x), atol=1e-6), mode


@pytest.mark.parametrize("depth", [11, 13, 16, 19])
def test_vgg_has_four_max_pools(depth):
    assert sum(isinstance(m, nn.MaxPool2d) for m in make("vgg", depth=depth).modules()) == 4
