"""Config: defaults, shipped YAML files, flag and --set overrides, run names."""
import pytest

from tickets.augment import configured_transforms
from tickets.components import make_schedule
from tickets.config import (
    CONFIG_DIR,
    build_config,
    check_names,
    config_defaults,
    default_name,
    fingerprint,
    parse_rewind,
)
from tickets.errors import TicketsError
from tickets.plugins import registry
from tickets.schedules import lr_factor


def test_quick_config_is_the_default_of_prune():
    assert build_config("quick") == build_config(None, defaults=config_defaults("prune"))
    assert build_config(None, defaults=config_defaults("prune")).seeds == [0, 1, 2]


@pytest.mark.parametrize("path", sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
def test_every_shipped_config_loads_and_names_registered_components(path):
    config = build_config(path)
    check_names(config, registry())


def test_paper_lenet_settings():
    config = build_config("lenet_paper")
    assert (config.train.optimizer, config.train.lr, config.train.batch_size) == ("adam", 0.0012, 60)
    assert config.train.iterations == 50_000 and config.data.val_size == 5000
    assert config.prune.fraction == 0.2 and config.prune.layer_fractions == {"output.*": 0.1}


def test_precedence_file_then_flags_then_set():
    config = build_config("lenet_digits", {"train.lr": 0.01}, ["train.lr=0.02", "prune.rounds=3"])
    assert config.train.lr == 0.02 and config.prune.rounds == 3 and config.train.epochs == 30


def test_yaml_scientific_notation_without_dot_is_a_float():
    assert build_config(None, {}, ["train.lr=1e-3"]).train.lr == 0.001


def test_rewind_forms():
    assert parse_rewind("0") == (0, "it")
    assert parse_rewind("500it") == (500, "it")
    assert parse_rewind("2ep") == (2, "ep")
    with pytest.raises(TicketsError):
        parse_rewind("-1it")


def test_run_name_ignores_rounds_seeds_and_controls_but_not_settings():
    base = build_config(None)
    more = build_config(None, {"prune.rounds": 20, "seeds": [0, 1], "prune.controls": []})
    other = build_config(None, {"train.lr": 0.1})
    assert default_name(base) == default_name(more)
    assert fingerprint(base) != fingerprint(other)
    assert default_name(base).startswith("lenet_300_100-digits-magnitude-")


TRAIN_SIZES = {"digits": 4000, "mnist": 60000, "fashion_mnist": 60000, "cifar10": 50000}


def lr_and_length(name):
    config = build_config(name)
    schedule = make_schedule(config, TRAIN_SIZES[config.data.dataset] - config.data.val_size)
    factor = lr_factor(config, registry().get("schedules", config.train.schedule), schedule.total, schedule.per_epoch)
    return config, schedule, lambda t: config.train.lr * factor(t)


@pytest.mark.parametrize("path", sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
def test_every_shipped_config_has_a_valid_schedule_rewind_and_augmentation(path):
    config, _, _ = lr_and_length(path)
    applies = {a: registry().get("augmentations", a) for a in config.data.augment}
    assert len(configured_transforms(config, applies, (3, 32, 32))) == len(config.data.augment)
    assert "#" in (CONFIG_DIR / f"{path}.yaml").read_text().splitlines()[0]  # each says where it comes from


def test_paper_resnet20_and_vgg_schedules():
    config, schedule, lr = lr_and_length("resnet20_cifar10")
    assert schedule.total == 63_000 and schedule.rewind == 2000 and config.data.augment == ["crop", "flip"]
    assert [lr(t) for t in (0, 31_999, 32_000, 47_999, 48_000)] == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001])
    config, schedule, lr = lr_and_length("vgg19_cifar10")
    assert schedule.per_epoch == 703 and schedule.total == 112_480  # Frankle & Carbin's 112K iterations
    assert [lr(0), lr(5000), lr(10_000), lr(80 * 703), lr(120 * 703)] == pytest.approx([0, 0.05, 0.1, 0.01, 0.001])
    config, schedule, lr = lr_and_length("resnet20_digits")
    assert config.data.augment == ["crop"] and schedule.total == 648 and schedule.rewind == 20
