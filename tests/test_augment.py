"""Augmentation: flip and crop by hand, batches fixed by (seed, iteration), the same for ticket and controls."""
import torch
from conftest import invoke

from tickets.builtin.augmentations import crop, flip
from tickets.training import BatchStream

RECORDER = '''
import hashlib

import tickets

SEEN = []  # (batch size, digest of the augmented batch) per call


def record(x, generator):
    SEEN.append((x.shape[0], hashlib.sha1(x.contiguous().numpy().tobytes()).hexdigest()))
    return x


@tickets.hookimpl
def register_augmentations(register):
    register("record", record)
'''


def test_flip_mirrors_about_half_of_the_images():
    x = torch.arange(400 * 2 * 3 * 4, dtype=torch.float32).view(400, 2, 3, 4)
    out = flip(x, torch.Generator().manual_seed(0))
    same = (out == x).flatten(1).all(1)
    mirrored = (out == x.flip(-1)).flatten(1).all(1)
    assert bool((same ^ mirrored).all())  # each image is whole: either as it was or mirrored left-right
    assert 150 < int(mirrored.sum()) < 250


def test_crop_is_a_window_of_the_zero_padded_image():
    image = torch.arange(1, 10, dtype=torch.float32).view(1, 1, 3, 3)  # 1..9, no zeros
    out = crop(image.expand(300, 1, 3, 3), torch.Generator().manual_seed(0), padding=1)
    padded = torch.zeros(5, 5)
    padded[1:4, 1:4] = image[0, 0]
    windows = {(r, c): padded[r:r + 3, c:c + 3] for r in range(3) for c in range(3)}
    found = set()
    for img in out[:, 0]:
        hits = [rc for rc, w in windows.items() if torch.equal(img, w)]
        assert len(hits) == 1
        found.add(hits[0])
    assert found == set(windows)  # every one of the 9 offsets occurs
    assert torch.equal(crop(image, torch.Generator(), padding=0), image)


def batches(seed, start, end, augment=(crop, flip)):
    x = torch.randn(50, 1, 6, 6, generator=torch.Generator().manual_seed(1))
    y = torch.arange(50)
    return [b[0] for b in BatchStream(x, y, 8, seed, start, end, list(augment))]


def test_an_augmented_batch_depends_only_on_seed_and_iteration():
    full = batches(3, 0, 14)
    assert all(torch.equal(a, b) for a, b in zip(batches(3, 9, 14), full[9:]))  # rewound to 9
    assert all(torch.equal(a, b) for a, b in zip(batches(3, 0, 14), full))  # again
    plain = batches(3, 0, 14, augment=())
    assert not any(torch.equal(a, b) for a, b in zip(full, plain))
    other = batches(4, 0, 14)
    assert not any(torch.equal(a, b) for a, b in zip(full, other))


def test_ticket_and_every_control_see_the_dense_networks_augmented_batches(site, tmp_path):  # noqa: F811
    site.install("tickets-recorder", "0.1", {"recorder_plugin": RECORDER}, {"recorder": "recorder_plugin"})
    result = invoke("prune", "--out", tmp_path, "--name", "aug", "--rounds", "1", "--rewind", "4it",
                    "--controls", "reinit,random_prune", "--set", "train.iterations=12", "--set", "train.eval_every=5",
                    "--set", "data.augment=[crop, flip, record]", "--seeds", "0",
                    "--set", "execution.workers=1", "--quiet", env={"TICKETS_STRICT_PLUGINS": "1"})
    assert result.exit_code == 0, result.output
    import recorder_plugin
    # the 2-image batch is the probe that checks the configured augmentations once at start
    assert {size for size, _ in recorder_plugin.SEEN} == {2, 60}  # never the evaluation sets (500, 1000)
    seen = [call for call in recorder_plugin.SEEN if call[0] == 60]
    assert len(seen) == 12 + 3 * 8  # every training batch, once
    dense, rest = seen[:12], seen[12:]
    assert len({digest for _, digest in dense}) == 12
    for network in (rest[0:8], rest[8:16], rest[16:24]):  # ticket, then each control, from iteration 4 on
        assert network == dense[4:]
