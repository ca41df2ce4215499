"""The plugin API of tickets: the pluggy hook specifications.

This module is the documented, stable contract for third-party plugins. A plugin is a module
(found through the ``tickets`` entry-point group) with functions marked ``@tickets.hookimpl``
and named like the specs below. Every hook receives one argument, ``register``:

    register(name: str, obj, *, description: str | None = None) -> None

Calling it makes ``obj`` available under ``name`` for that kind of component, in configs and
command-line flags. A name claimed by two plugins is an error naming both. Built-in
components are registered through exactly these hooks (see ``tickets/builtin/``).
"""
import pluggy

from tickets.meta import PROJECT_NAME

hookspec = pluggy.HookspecMarker(PROJECT_NAME)


@hookspec
def register_criteria(register):
    """Register pruning criteria.

    ``obj`` is ``score(ctx) -> dict[str, Tensor]``: one score tensor per prunable parameter
    name, of that parameter's shape; a higher score means *keep*. ``ctx`` is a
    :class:`tickets.ticket.CriterionContext` with:

    - ``init``, ``rewind``, ``final``: dicts name -> tensor of the prunable parameters at
      initialization, at the rewind point and after training (CPU tensors, do not modify);
    - ``mask``: the current :class:`tickets.masks.Mask` (already-pruned weights are ignored:
      they can never come back, whatever their score);
    - ``model``: the trained ``nn.Module`` (already-pruned weights are zero);
    - ``batches``: a function ``batches(n) -> list[(x, y)]`` giving ``n`` training batches
      for data-dependent criteria (SNIP, GraSP, ...);
    - ``generator``: a seeded ``torch.Generator`` for criteria that need randomness;
    - ``fraction``, ``layer_fractions``, ``scope``: how the core will prune this round (for
      iterative criteria such as SynFlow that simulate the pruning themselves);
    - ``criterion_batches``: how many training batches data-dependent criteria should use
      (config ``prune.criterion_batches``);
    - ``structure``, ``input_shape``: ``prune.structure`` (weights, neurons or channels) and the
      data's (channels, height, width).

    Structured pruning (``structure`` neurons or channels) prunes whole units (rows of a
    weight, see :mod:`tickets.structure`): a unit's score is the sum of its surviving weights'
    scores (for magnitude, the L1 norm of the row: Li et al.'s filter norm). A criterion can
    score units directly instead: a 1-D tensor with one score per row (``bn_scale`` does,
    with the BatchNorm scale |gamma| of network slimming).

    The core, not the criterion, turns scores into a mask (global or per layer, with the
    configured per-layer fractions, equal scores ranked at random with ``generator``), so a
    criterion only ranks weights.
    """


@hookspec
def register_initializers(register):
    """Register weight initializers.

    ``obj`` is ``init(param: Tensor, name: str, generator: torch.Generator) -> None`` and
    fills ``param`` (a weight of a conv or linear layer) in place, drawing all randomness
    from ``generator`` so that a seed fully determines the result. Biases are set to zero
    and normalization layers keep their defaults; initializers see only the weights.
    """


@hookspec
def register_optimizers(register):
    """Register optimizers.

    ``obj`` is ``make(params, lr: float, **options) -> torch.optim.Optimizer``. ``options``
    come from the config's ``train.optimizer_options`` (for example ``momentum``,
    ``nesterov``, ``weight_decay``, ``amsgrad``); unknown options should raise ``TypeError``.
    """


@hookspec
def register_models(register):
    """Register network architectures.

    ``obj`` is ``make(num_classes: int, input_shape: tuple, **options) -> nn.Module``.
    ``input_shape`` is ``(channels, height, width)``. The module maps a float batch of
    that shape to logits. Weights of ``nn.Linear`` and ``nn.Conv2d`` layers are prunable;
    name the last (output) layer ``output`` so that per-layer fractions such as
    ``output.*: 0.1`` work across models.
    """


@hookspec
def register_datasets(register):
    """Register datasets.

    ``obj`` is ``load(data_dir: str | None, download: bool) -> tickets.data.TensorData``:
    train and test tensors (images as uint8 or float, ``N x C x H x W``; labels as int64),
    the number of classes and the normalization mean/std per channel. tickets holds out
    the validation split itself. Raise :class:`tickets.errors.TicketsError` with a clear
    message when files are missing.
    """


@hookspec
def register_controls(register):
    """Register controls: how a comparison network is derived from a ticket.

    ``obj`` is ``make(ticket, ctx) -> Ticket``. ``ticket`` is the round's
    :class:`tickets.ticket.Ticket` (its mask, its starting weights ``state``, and
    ``pruned_values``); ``ctx`` is a :class:`tickets.ticket.ControlContext` with a seeded
    ``generator``, ``init`` (theta_0), ``rewind`` (theta_k) as full state dicts, ``initialize(generator) -> state``
    to draw fresh weights from the run's initializer, ``prunable`` (parameter names),
    ``trained()`` (the previous round's trained ticket, recorded as an input when called),
    ``schedule_end`` (T), ``rewind_iteration`` (k) and ``retrain_iterations``.
    Return a new Ticket; never modify the one given. The returned ticket says where the network
    starts and what it trains: its ``state``, its span ``start_iteration`` to ``end_iteration``
    (None: T) and its ``lr_offset`` (the step at t uses the schedule's value at t + offset, its
    last value past the end); see docs/plugins.md and the built-in finetune, lr_rewind, scratch.
    """


@hookspec
def register_schedules(register):
    """Register learning-rate schedules.

    ``obj`` is ``make(total_iterations: int, iterations_per_epoch: int, **options) -> f`` where
    ``f(iteration: int) -> float`` is the multiplier of the base learning rate (``train.lr``)
    for the optimizer step taken at that iteration (0-based, up to ``total_iterations - 1``).
    ``options`` come from ``train.schedule_options``; unknown options should raise
    ``TypeError``, bad values (e.g. a milestone past the end of training) ``ValueError``
    with a message naming the value. ``f`` must be a pure function of the iteration: a
    network rewound to iteration k, or resumed from a checkpoint, continues the schedule
    there. A linear warmup (``train.warmup``) multiplies any schedule; the schedule need not
    handle it. :func:`tickets.config.to_iterations` turns ``"80ep"`` / ``"500it"`` into
    iterations.
    """


@hookspec
def register_augmentations(register):
    """Register data augmentations.

    ``obj`` is ``apply(x: Tensor, generator: torch.Generator, **options) -> Tensor``: it
    transforms one whole training batch ``x`` (``N x C x H x W``, normalized, on the training
    device) and returns a batch of the same shape, drawing all randomness from ``generator``
    (a generator on ``x``'s device). Work on the whole batch at once (no per-sample Python
    loop). ``options`` come from ``data.augment_options[name]``. The generator is seeded by
    (seed, iteration), so every network of a seed (ticket and controls) sees the same
    augmented batch at the same iteration. Evaluation batches are never augmented.
    """


@hookspec
def register_mask_updates(register):
    """Register mask updates: the drop-and-grow rules of sparse training (``tickets sparse-train --method``).

    ``obj`` is ``update(ctx) -> dict[str, Tensor]``: the new mask of every prunable weight (bool,
    of the weight's shape). ``ctx`` is a :class:`tickets.builtin.mask_updates.MaskUpdateContext`
    with, at one update (CPU tensors; do not modify them):

    - ``masks``: name -> bool tensor, the current masks;
    - ``weights``: name -> the weights after this iteration's optimizer step (inactive ones are 0);
    - ``grads``: name -> the dense gradient of this iteration's loss, taken before the core masked
      it, so inactive connections have theirs (RigL grows by it);
    - ``counts``: name -> how many connections to drop and grow in that tensor: the drop fraction
      of its active ones, rounded half up, at most the number inactive (grown ones are chosen
      among the connections inactive before the update, so the dropped and grown sets are disjoint);
    - ``fraction``: the drop fraction at this update; ``iteration``: the iterations done;
    - ``generator``: a ``torch.Generator`` seeded by (seed, round, method, iteration), for ties
      and random growth.

    The core checks that every tensor keeps its number of active connections (a rule that changes
    one is an error naming it); connections that become active start at zero with zeroed optimizer
    state. The helpers ``drop_smallest`` and ``select_top`` of :mod:`tickets.builtin.mask_updates`
    rank with random ties, as the built-in ``set`` and ``rigl`` do.

    Optional attributes of ``obj`` give its own schedule, used unless the config sets one:
    ``drop_schedule`` (``"cosine"``: fraction * (1 + cos(pi t / T_end)) / 2, the default; or
    ``"constant"``) and ``update_end`` (T_end as a fraction of training, default 0.75; no update
    at or after it).
    """
