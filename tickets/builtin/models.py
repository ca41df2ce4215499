"""Built-in architectures: the networks of the lottery-ticket papers.

Every model is built by ``make(num_classes, input_shape, **options)`` and names its last
layer ``output``. Options a model does not know raise ``TypeError`` (they are ordinary
keyword arguments); bad values of known options raise :class:`tickets.errors.TicketsError`.
Weights get PyTorch's default initialization here; tickets re-initializes them itself.
"""
from __future__ import annotations

from torch import nn

from tickets.errors import TicketsError
from tickets.meta import hookimpl


def _shape(input_shape) -> tuple[int, int, int]:
    """``input_shape`` as a checked ``(channels, height, width)`` tuple of ints."""
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise TicketsError("input_shape must be (channels, height, width) with positive sizes, "
                           f"got {tuple(input_shape)}")
    return shape


def _pooled(size: int, model: str, input_shape) -> int:
    """Side length after a 2x2 max-pool; an error when the image is too small for the model."""
    if size < 2:
        raise TicketsError(f"model {model!r} pools the image too often for input shape {tuple(input_shape)}")
    return size // 2


class LeNet300100(nn.Module):
    """Fully connected 300-100 network: flatten, ``fc1`` (300), ``fc2`` (100), ``output``."""

    def __init__(self, num_classes: int, in_features: int):
        super().__init__()
        self.fc1 = nn.Linear(in_features, 300)
        self.fc2 = nn.Linear(300, 100)
        self.output = nn.Linear(100, num_classes)
        self.relu = nn.ReLU()

    def forward(self, x):
        x = x.flatten(1)
        x = self.relu(self.fc1(x))
        x = self.relu(self.fc2(x))
        return self.output(x)


class ConvNet(nn.Module):
    """Frankle & Carbin's Conv-2/4/6: pairs of 3x3 convs, each pair followed by a 2x2 max-pool,
    then fully connected ``fc1`` (256), ``fc2`` (256) and ``output``."""

    def __init__(self, num_classes: int, input_shape, filters: tuple[int, ...], name: str):
        super().__init__()
        channels, height, width = _shape(input_shape)
        layers = []
        for i, out_channels in enumerate(filters):
            layers += [nn.Conv2d(channels, out_channels, kernel_size=3, padding=1), nn.ReLU()]
            channels = out_channels
            if i % 2 == 1:
                layers.append(nn.MaxPool2d(2))
                height, width = _pooled(height, name, input_shape), _pooled(width, name, input_shape)
        self.features = nn.Sequential(*layers)
        self.fc1 = nn.Linear(channels * height * width, 256)
        self.fc2 = nn.Linear(256, 256)
        self.output = nn.Linear(256, num_classes)
        self.relu = nn.ReLU()

    def forward(self, x):
        x = self.features(x).flatten(1)
        x = self.relu(self.fc1(x))
        x = self.relu(self.fc2(x))
        return self.output(x)


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 conv-BN layers and a shortcut (1x1 conv-BN when the shape changes)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """He et al.'s CIFAR ResNet-(6n+2): a 3x3 stem, three stages of ``n`` basic blocks
    (16, 32, 64 channels times ``width``; stride 2 entering stages 2 and 3), global average
    pooling and ``output``."""

    def __init__(self, num_classes: int, input_shape, blocks_per_stage: int = 3, width: float = 1):
        super().__init__()
        channels = _shape(input_shape)[0]
        if not width > 0:
            raise TicketsError(f"resnet option width must be positive, got {width!r}")
        stage_channels = [max(1, round(c * width)) for c in (16, 32, 64)]
        self.conv = nn.Conv2d(channels, stage_channels[0], 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(stage_channels[0])
        self.relu = nn.ReLU()
        blocks, in_channels = [], stage_channels[0]
        for stage, out_channels in enumerate(stage_channels):
            for block in range(blocks_per_stage):
                stride = 2 if stage > 0 and block == 0 else 1
                blocks.append(BasicBlock(in_channels, out_channels, stride))
                in_channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.output = nn.Linear(in_channels, num_classes)

    def forward(self, x):
        x = self.relu(self.bn(self.conv(x)))
        x = self.pool(self.blocks(x)).flatten(1)
        return self.output(x)


# Conv widths per VGG depth; "M" is a 2x2 max-pool (Simonyan & Zisserman, configurations A, B, D, E).
# As in OpenLTH's cifar_vgg (Frankle's code): four max-pools; the last group of convs is not
# max-pooled but averaged (for 32x32 images a 2x2 map, OpenLTH's AvgPool2d(2)).
VGG_LAYERS = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512],
}


class CifarVGG(nn.Module):
    """VGG for CIFAR: 3x3 conv-BN-ReLU layers with four max-pools in ``features``, global average
    pooling of the last feature map (2x2 for 32x32 images, as OpenLTH's ``AvgPool2d(2)``) and a
    single linear ``output`` layer (no large fully connected head).

    A max-pool is skipped once the feature map is 1x1, so small images (28x28) work too.
    """

    def __init__(self, num_classes: int, input_shape, depth: int = 16):
        super().__init__()
        if depth not in VGG_LAYERS:
            raise TicketsError(f"vgg option depth must be one of {sorted(VGG_LAYERS)}, got {depth!r}")
        channels, height, width = _shape(input_shape)
        layers = []
        for item in VGG_LAYERS[depth]:
            if item == "M":
                if min(height, width) >= 2:
                    layers.append(nn.MaxPool2d(2))
                    height, width = height // 2, width // 2
                continue
            layers += [nn.Conv2d(channels, item, 3, padding=1, bias=False), nn.BatchNorm2d(item), nn.ReLU()]
            channels = item
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.output = nn.Linear(channels, num_classes)

    def forward(self, x):
        return self.output(self.pool(self.features(x)).flatten(1))


def lenet_300_100(num_classes, input_shape):
    """LeNet-300-100: 784-300-100-10 fully connected (Frankle & Carbin)."""
    channels, height, width = _shape(input_shape)
    return LeNet300100(num_classes, channels * height * width)


def conv2(num_classes, input_shape):
    """Conv-2: conv 64, 64, pool, fc 256, 256, output (Frankle & Carbin)."""
    return ConvNet(num_classes, input_shape, (64, 64), "conv2")


def conv4(num_classes, input_shape):
    """Conv-4: conv 64, 64, pool, 128, 128, pool, fc 256, 256, output (Frankle & Carbin)."""
    return ConvNet(num_classes, input_shape, (64, 64, 128, 128), "conv4")


def conv6(num_classes, input_shape):
    """Conv-6: conv 64, 64, pool, 128, 128, pool, 256, 256, pool, fc 256, 256, output (Frankle & Carbin)."""
    return ConvNet(num_classes, input_shape, (64, 64, 128, 128, 256, 256), "conv6")


def resnet20(num_classes, input_shape, width=1):
    """ResNet-20 for CIFAR (He et al.): 3 stages x 3 basic blocks, 16/32/64 channels x width, BatchNorm."""
    return CifarResNet(num_classes, input_shape, blocks_per_stage=3, width=width)


def vgg(num_classes, input_shape, depth=16):
    """VGG-11/13/16/19 for CIFAR (option depth, default 16), BatchNorm, 4 max-pools, global average pool."""
    return CifarVGG(num_classes, input_shape, depth=depth)


def vgg11(num_classes, input_shape):
    """VGG-11 for CIFAR, BatchNorm, global average pool."""
    return CifarVGG(num_classes, input_shape, depth=11)


def vgg16(num_classes, input_shape):
    """VGG-16 for CIFAR, BatchNorm, global average pool."""
    return CifarVGG(num_classes, input_shape, depth=16)


def vgg19(num_classes, input_shape):
    """VGG-19 for CIFAR, BatchNorm, global average pool (Frankle & Carbin's VGG-19, 20M weights)."""
    return CifarVGG(num_classes, input_shape, depth=19)


@hookimpl
def register_models(register):
    """LeNet-300-100, Conv-2/4/6, ResNet-20 and VGG-11/13/16/19."""
    for make in (lenet_300_100, conv2, conv4, conv6, resnet20, vgg, vgg11, vgg16, vgg19):
        register(make.__name__, make, description=make.__doc__.strip().splitlines()[0])
