"""The ``tickets`` command line: prune, train, supermask, sparse-train, stability, compare, report, plugins,
runs, check.

User errors (bad flags, bad configs, unknown names, missing files, damaged inputs, devices this
machine lacks) print one line on stderr and exit with code 2, before anything in the output
directory is touched. Exit codes: 0 done; 2 bad input; 3 the run finished but some network
diverged; 4 ``tickets check`` found damaged files; 5 a file could not be written (a full disk,
permissions: run again to resume once fixed); 130 interrupted (run again to resume).
"""
from __future__ import annotations

import atexit
import json
import os
import sys
import threading
from pathlib import Path

import click

from tickets import plugins as plugin_mod
from tickets.errors import TicketsError

EXIT_USAGE = 2
EXIT_DIVERGED = 3
EXIT_DAMAGED = 4
EXIT_WRITE_FAILED = 5
EXIT_INTERRUPTED = 130


def write_failure(error: OSError) -> str:
    """One line for an OS error on writing a run's files: what, where, and that the run resumes."""
    import errno

    where = error.filename or "the output folder"
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        cause = "the disk is full"
        fix = "free some space (or give --out another disk), then run the same command: it resumes where it stopped"
    elif error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        cause = "permission denied" if error.errno != errno.EROFS else "the file system is read-only"
        fix = "give --out a folder you can write to, or fix its permissions, then run the same command to resume"
    else:
        cause = error.strerror or type(error).__name__
        fix = "fix the cause, then run the same command: finished networks stay finished"
    return f"cannot write {where}: {cause}; {fix}"


class TicketsGroup(click.Group):
    """A click group that turns user errors into one line and exit code 2."""

    def main(self, args=None, prog_name=None, **extra):
        try:
            return super().main(args=args, prog_name=prog_name, standalone_mode=False, **extra)
        except TicketsError as error:
            click.echo(f"Error: {error}", err=True)
            sys.exit(EXIT_USAGE)
        except click.exceptions.NoArgsIsHelpError as error:
            click.echo(error.ctx.get_help() if error.ctx else str(error))
            sys.exit(EXIT_USAGE)
        except click.ClickException as error:
            hint = f" (see '{error.ctx.command_path} --help')" if getattr(error, "ctx", None) else ""
            click.echo(f"Error: {error.format_message()}{hint}", err=True)
            sys.exit(error.exit_code if error.exit_code != 1 else EXIT_USAGE)
        except OSError as error:  # a full disk, permissions: the files written so far are intact
            click.echo(f"Error: {write_failure(error)}", err=True)
            sys.exit(EXIT_WRITE_FAILED)
        except (click.exceptions.Abort, KeyboardInterrupt):  # click turns Ctrl-C into Abort
            click.echo("\nInterrupted: run the same command again to resume where it stopped.", err=True)
            sys.exit(EXIT_INTERRUPTED)


@click.group(cls=TicketsGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tickets")
@click.option("--strict-plugins", is_flag=True, default=None,
              help="Fail (exit 2) when a plugin cannot be loaded (also TICKETS_STRICT_PLUGINS=1).")
def main(strict_plugins):
    """tickets: find and study lottery tickets (sparse trainable subnetworks)."""
    plugin_mod.set_strict(True if strict_plugins else None)
    if plugin_mod.strict_enabled():
        plugin_mod.plugin_set()  # strict: a broken plugin stops every command (exit 2, with the reason)


def _seeds(value: str | None):
    if value is None:
        return None
    try:
        return [int(s) for s in value.split(",") if s.strip()]
    except ValueError:
        raise TicketsError(f"--seeds {value!r}: expected comma-separated integers, e.g. --seeds 0,1,2") from None


def _controls(value: str | None):
    if value is None:
        return None
    names = [c.strip() for c in value.split(",") if c.strip()]
    return [] if names in ([], ["none"]) else names


def _devices(value: str | None):
    if value is None:
        return None
    if value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        try:
            return [int(v) for v in value.split(",")]
        except ValueError:
            raise TicketsError(f"--devices {value!r}: give a count (1), device indices (0 or 0,1) or auto") from None


logger_option = click.option(
    "--logger", "loggers", multiple=True, metavar="NAME",
    help="Log each network's curves with a Lightning logger: tensorboard, csv, mlflow or wandb (repeatable).")


def run_options(func=None, *, without: tuple[str, ...] = ()):
    """The flags shared by prune, train, supermask (and stability, ``without`` its own flags)."""
    if func is None:
        return lambda f: run_options(f, without=without)
    options = [
        click.option("--config", "config_path", help="YAML config file, or the name of a shipped config in configs/."),
        click.option("--rounds", type=int, help="Pruning rounds after the dense network."),
        click.option("--epochs", type=float, help="Training epochs per network."),
        click.option("--prune-fraction", type=float, help="Fraction of the remaining weights pruned per round."),
        click.option("--criterion", help="Pruning criterion (see `tickets plugins --kind criteria`)."),
        click.option("--scope", help="layerwise or global."),
        click.option("--rewind", help="Rewind point: 0 (initialization), 500it or 2ep."),
        click.option("--controls", help="Comma-separated controls, or none (finetune, lr_rewind and scratch are "
                                        "the retraining strategies)."),
        click.option("--retrain", help="How each round's ticket trains: rewind (default), finetune or lr_rewind."),
        click.option("--retrain-iterations", help="Fine-tuning's length: 500it or 2ep (default T - k)."),
        click.option("--structure", help="What is pruned: weights (default), neurons (Linear rows) or channels "
                                         "(conv filters and neurons), with what reads them."),
        click.option("--seeds", help="Comma-separated seeds, e.g. 0,1,2."),
        click.option("--optimizer", help="Optimizer name."),
        click.option("--lr", type=float, help="Learning rate."),
        click.option("--schedule", help="Learning-rate schedule: constant, multistep, cosine, linear "
                                        "(see `tickets plugins --kind schedules`)."),
        click.option("--warmup", help="Linear learning-rate warmup: 0, 500it or 2ep."),
        click.option("--batch-size", type=int, help="Minibatch size."),
        click.option("--dataset", help="Dataset name (digits is built in and needs no network)."),
        click.option("--model", help="Model name."),
        click.option("--data-dir", help="Folder with (or for) torchvision datasets."),
        click.option("--out", default="outputs", show_default=True, help="Folder that holds runs."),
        click.option("--name", help="Run name (default: derived from the settings, so re-running resumes)."),
        click.option("--accelerator", help="Lightning accelerator: cpu, gpu, auto, ..."),
        click.option("--devices", help="Lightning devices: 1, a device index list, or auto."),
        logger_option,
        click.option("--set", "sets", multiple=True, metavar="SECTION.KEY=VALUE", help="Set any config key."),
        click.option("--quiet", "-q", is_flag=True, help="No progress display."),
    ]
    for option in reversed(options):
        probe = option(lambda: None)
        if probe.__click_params__[0].name not in without:
            func = option(func)
    return func


def execution_options(func):
    """The flags that choose how networks are executed (never what they compute)."""
    options = [
        click.option("--workers", help="Networks trained at once on this machine: a count, or auto (one per CPU "
                                       "core, or per GPU); 1 trains in this process."),
        click.option("--workers-per-gpu", type=int, help="Workers sharing each GPU (small networks)."),
        click.option("--executor", help="local (this machine) or ray (a Ray cluster; pip install \"tickets[ray]\")."),
        click.option("--address", help="Ray cluster: none starts a local instance; auto; ray://host:port."),
        click.option("--cpus-per-network", type=float, help="Ray: CPUs reserved per network."),
        click.option("--gpus-per-network", type=float, help="Ray: GPUs per network (fractions share a GPU)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _workers(value: str | None):
    if value is None or value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise TicketsError(f"--workers {value!r}: give a count of at least 1 or auto, e.g. --workers 2") from None


def _flags(opts: dict) -> dict:
    """The click options of a run command as the API's keyword arguments (Python values; unset ones left out)."""
    parse = {"seeds": _seeds, "controls": _controls, "devices": _devices, "workers": _workers,
             "loggers": lambda v: list(v) or None}
    skip = ("config_path", "sets", "out", "quiet")
    flags = {k: parse[k](v) if k in parse else v for k, v in opts.items() if k not in skip}
    return {k: v for k, v in flags.items() if v is not None}


def _common(opts: dict) -> dict:
    """config=, set=, out= and quiet= of a run command."""
    from tickets.config import parse_set

    return {"config": opts.get("config_path"), "set": dict(parse_set(s) for s in opts.get("sets") or ()),
            "out": opts.get("out", "outputs"), "quiet": opts.get("quiet", False)}


PRUNING_ONLY = ("rounds", "prune_fraction", "criterion", "scope", "controls", "retrain", "retrain_iterations",
                "structure")


@main.command()
@run_options
@execution_options
def prune(**opts):
    """Iterative magnitude pruning with rewinding and controls (resumable)."""
    from tickets import api

    _import_report_meanwhile()
    _finish(api.prune(**_common(opts), **_flags(opts)), opts["quiet"])


@main.command()
@run_options(without=PRUNING_ONLY)
@execution_options
def train(**opts):
    """Train one dense network per seed (round 0 only, no controls)."""
    from tickets import api

    _finish(api.train(**_common(opts), **_flags(opts)), opts["quiet"], report=False)


def _import_report_meanwhile() -> None:
    """Import the report's modules (scipy, matplotlib: about a second) in the background while the run
    starts: the driver mostly waits for its workers' imports then, and the report follows the last network."""
    import importlib

    threading.Thread(target=importlib.import_module, args=("tickets.report.sections",), daemon=True,
                     name="tickets-import-report").start()


def _finish(run, quiet: bool, report: bool = True) -> None:
    """Print where the results (and the report) are; warn about networks that did not learn; exit 3 when
    some network of the run diverged."""
    click.echo(f"results: {run.path / 'results.csv'}")
    if report:
        click.echo(f"report:  {run.report()}")
    rows = run.results.to_dict("records") if not run.results.empty else []
    diverged = [r for r in rows if r.get("status") == "diverged"]
    if diverged:
        names = ", ".join(f"seed {r['seed']} round {r['round']} {r['variant']}" for r in diverged)
        click.echo(f"{len(diverged)} network{'s' if len(diverged) > 1 else ''} diverged (status diverged in "
                   f"results.csv): {names}", err=True)
        sys.exit(EXIT_DIVERGED)


@main.command()
@click.option("--out", default="outputs", show_default=True, help="Folder that holds runs.")
def runs(out):
    """List the runs under --out with their progress."""
    from tickets.runs import list_runs

    if Path(out).exists() and not Path(out).is_dir():
        raise TicketsError(f"--out {out} is a file, not a folder of runs; pass the folder that holds runs "
                           f"(default: outputs)")
    rows = list_runs(Path(out))
    if not rows:
        click.echo(f"no runs under {out}")
        return
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        click.echo(f"{r['name']:<{width}}  {r['status']:<11}  {r['done']:>4}/{r['expected']:<4} networks"
                   f"  {r['summary']}")


@main.command(name="plugins")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--kind", help="Only this kind of component (criteria, initializers, optimizers, models, datasets, "
                             "controls, schedules, augmentations).")
def plugins_command(as_json, kind):
    """List plugins (built-in and installed): version, status and the names they provide.

    Status is ``active``, ``failed: REASON`` or ``skipped: REASON`` (TICKETS_PLUGINS). A
    failed plugin is listed, not fatal, unless --strict-plugins or TICKETS_STRICT_PLUGINS=1.
    """
    from tickets.registry import KINDS, SINGULAR

    if kind is not None:
        kind = {v: k for k, v in SINGULAR.items()}.get(kind, kind)  # "criterion" works as well as "criteria"
        if kind not in KINDS:
            raise TicketsError(f"unknown kind {kind!r}; kinds are {', '.join(KINDS)}")
    loaded = plugin_mod.load_plugins(strict=plugin_mod.strict_enabled(), warn=lambda line: None)
    conflicts = [loaded.registry.conflict_message(k, n) for (k, n) in loaded.registry.conflicts
                 if kind is None or k == kind]
    infos = loaded.plugins
    if kind is not None:  # keep plugins that provide this kind, and every plugin that is not active
        infos = [i for i in infos if kind in i.provides or i.status != "active"]
    if as_json:
        data = [i.as_dict() for i in infos]
        if kind:
            for d in data:
                d["provides"] = {k: v for k, v in d["provides"].items() if k == kind}
        click.echo(json.dumps({"plugins": data, "conflicts": conflicts}, indent=2))
        return
    for info in infos:
        status = info.status if not info.reason else f"{info.status}: {info.reason}"
        origin = "built-in" if info.builtin else info.distribution
        click.echo(f"{info.name}  [{origin} {info.version}]  {status}")
        for k, provided in info.provides.items():
            if kind and k != kind:
                continue
            for name, description in provided:
                click.echo(f"    {k:<12} {name:<28} {description}")
    for line in conflicts:
        click.echo(f"conflict: {line}")
    counts = {s: sum(1 for i in loaded.plugins if i.status == s) for s in ("active", "failed", "skipped")}
    click.echo(f"{len(loaded.plugins)} plugins: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n))


@main.command()
@click.argument("run", type=click.Path(file_okay=False, path_type=Path))
@click.option("--controls", required=True, help="Comma-separated controls to add, e.g. reinit,signed_reinit.")
@click.option("--accelerator", help="Lightning accelerator for the controls: cpu, gpu, auto, ...")
@click.option("--devices", help="Lightning devices: 1, a device index list, or auto.")
@logger_option
@click.option("--quiet", "-q", is_flag=True, help="No progress display.")
@execution_options
def compare(run, controls, accelerator, devices, loggers, quiet, **execution):
    """Train the controls RUN lacks for its saved tickets, then write its report."""
    from tickets import api

    names = _controls(controls)
    if not names:
        raise TicketsError("--controls names no control; give e.g. --controls reinit,random_prune")
    execution["workers"] = _workers(execution["workers"])
    result = api.compare(run, names, accelerator=accelerator, devices=_devices(devices), loggers=list(loggers) or None,
                         quiet=quiet, **{k: v for k, v in execution.items() if v is not None})
    _finish(result, quiet)


@main.command()
@click.argument("run", type=click.Path(file_okay=False, path_type=Path))
@click.option("--dataset", help="The target dataset (same input shape; the output layer adapts to its classes).")
@click.option("--optimizer", help="The target optimizer.")
@click.option("--lr", type=float, help="The target learning rate.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Any other setting that keeps the architecture, e.g. train.epochs=2 (repeatable).")
@click.option("--controls", help="Controls trained on the target (default reinit,random_prune), or none.")
@click.option("--name", help="The new run's name (default: RUN's and the changes').")
@click.option("--out", help="Folder for the new run (default: RUN's folder).")
@click.option("--quiet", "-q", is_flag=True, help="No progress display.")
@execution_options
def transfer(run, dataset, optimizer, lr, sets, controls, name, out, quiet, **execution):
    """Train RUN's tickets (its masks over its starting weights) on another dataset or optimizer, with controls."""
    from tickets import api
    from tickets.config import parse_set

    execution["workers"] = _workers(execution["workers"])
    _import_report_meanwhile()
    result = api.transfer(run, dataset=dataset, optimizer=optimizer, lr=lr, set=dict(parse_set(s) for s in sets),
                          controls=_controls(controls) if controls is not None else None, name=name, out=out,
                          quiet=quiet, **{k: v for k, v in execution.items() if v is not None})
    _finish(result, quiet)


@main.command()
@click.argument("run", type=click.Path(file_okay=False, path_type=Path))
def check(run):
    """Verify every file of RUN against its recorded checksums; say what is wrong (exit 4) and what to do."""
    from tickets import api

    found = api.check(run)
    click.echo(f"{run}: {found.finished} jobs finished and intact ({found.diverged} diverged), "
               f"{found.unfinished} unfinished")
    for problem in found.problems:
        click.echo(f"problem: {problem}")
    if found.problems:
        click.echo(f"{len(found.problems)} problem{'s' if len(found.problems) > 1 else ''} found")
        sys.exit(EXIT_DAMAGED)
    click.echo("no problems found")


SUPERMASK_UNUSED = (*PRUNING_ONLY, "rewind")


@main.command()
@run_options(without=SUPERMASK_UNUSED)
@click.option("--method", help="bernoulli (Zhou et al.) or edge_popup (Ramanujan et al.; the default).")
@click.option("--density", type=float, help="edge_popup: fraction kept per layer; bernoulli: initial keep probability.")
@click.option("--init", help="Initializer of the frozen weights (model.init), e.g. signed_constant or kaiming_normal.")
@execution_options
def supermask(**opts):
    """Learn a mask over frozen random weights (resumable); rows go to results.csv.

    Method defaults, beneath any config file and flags: bernoulli trains its scores at lr 0.3
    (Adam); edge_popup's frozen weights are signed_constant. Otherwise the usual defaults
    (Adam, lr 1.2e-3, 5 epochs, kaiming_normal weights, density 0.5).
    """
    from tickets import api

    run = api.supermask(**_common(opts), **_flags(opts))
    for row in run.results.to_dict("records"):
        click.echo(f"seed {row['seed']} {row['variant']}: density {float(row['weights_remaining']):.4f}, "
                   f"test acc {100 * float(row['test_acc_at_early_stop']):.2f}% at early stop, "
                   f"final {100 * float(row['final_test_acc']):.2f}%")
    _finish(run, opts["quiet"])


@main.command(name="sparse-train")
@click.option("--like", type=click.Path(file_okay=False, path_type=Path),
              help="A prune run: train at its rounds' weights remaining, with its seeds and settings.")
@click.option("--method", help="Comma-separated: static (a random mask), set (Mocanu et al.), rigl (Evci et al.; the "
                               "default) or a plugin's mask update.")
@click.option("--density", type=float, help="Fraction of prunable weights active (default 0.1); or --like.")
@click.option("--distribution", help="Layer densities: uniform (default), erk (Erdos-Renyi-Kernel), or like "
                                     "(--like RUN's per-layer counts).")
@click.option("--update-every", type=int, help="Iterations between mask updates (default 100).")
@click.option("--drop-fraction", type=float, help="Fraction of each layer's active weights dropped and regrown per "
                                                  "update: RigL's alpha, SET's zeta (default 0.3).")
@click.option("--rounds", "like_rounds", help="With --like: comma-separated rounds of RUN (default: all).")
@run_options(without=SUPERMASK_UNUSED)
@execution_options
def sparse_train(like, method, density, distribution, update_every, drop_fraction, like_rounds, **opts):
    """Sparse networks trained from scratch at a fixed density (resumable); rows go to results.csv.

    static keeps its random mask; set and rigl drop the smallest weights and regrow as many
    connections (at random; by dense gradient magnitude) every --update-every iterations.
    """
    from tickets import api

    common = _common(opts)
    if like is not None and common["config"]:
        raise TicketsError("--like RUN trains with RUN's settings; drop --config")
    try:
        rounds = None if like_rounds is None else [int(r) for r in like_rounds.split(",") if r.strip()]
    except ValueError:
        raise TicketsError(f"--rounds {like_rounds!r}: expected comma-separated rounds, e.g. --rounds 3,6") from None
    run = api.sparse_train(like, method=method, density=density, distribution=distribution, update_every=update_every,
                           drop_fraction=drop_fraction, rounds=rounds, **common, **_flags(opts))
    for row in run.results.to_dict("records"):
        click.echo(f"seed {row['seed']} round {row['round']} {row['variant']}: density "
                   f"{float(row['weights_remaining']):.4f}, test acc {100 * float(row['test_acc_at_early_stop']):.2f}% "
                   f"at early stop, final {100 * float(row['final_test_acc']):.2f}%")
    _finish(run, opts["quiet"])


@main.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--out", help="Folder for the report (default: RUN/report for one run).")
@click.option("--max-weights-remaining", type=float,
              help="The study-level test covers rounds at or below this fraction of weights (default 0.215).")
def report(runs, out, max_weights_remaining):
    """Summary, comparison and study CSVs, plots and report.md for one or more runs."""
    from tickets import api

    click.echo(f"report: {api.report(*runs, out=out, max_weights_remaining=max_weights_remaining)}")


STABILITY_OWN = ("rounds", "controls", "seeds", "prune_fraction", "criterion", "scope", "rewind", "loggers", "retrain",
                 "retrain_iterations", "structure")


@main.command()
@click.argument("run", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--at", required=True, help="Rewind points k, comma-separated: 0,100it,500it,2ep.")
@click.option("--points", type=int, default=30, show_default=True,
              help="Evenly spaced points of the path between the two copies (at least 3; Frankle et al. use 30).")
@click.option("--seeds", help="Comma-separated seeds (replicates); with RUN, among its seeds.")
@click.option("--rounds", help="With RUN: comma-separated rounds (default: every round of RUN).")
@click.option("--controls", help="With RUN: controls analysed beside the tickets (default: RUN's), or none.")
@click.option("--reset-bn", is_flag=True, help="Recompute BatchNorm statistics on the training set at each point.")
@run_options(without=STABILITY_OWN)
@execution_options
def stability(run, at, points, seeds, rounds, controls, reset_bn, **opts):
    """Instability analysis (linear mode connectivity) of a config's dense network, or of RUN's rounds.

    Two copies train from each rewind point k to the end with different data orders; the test
    error along the straight line between them gives the instability (resumable).
    """
    from tickets import api

    round_list = None
    if rounds is not None:
        try:
            round_list = [int(r) for r in rounds.split(",") if r.strip()]
        except ValueError:
            raise TicketsError(f"--rounds {rounds!r}: expected comma-separated integers, e.g. --rounds 0,3,6") from None
    common = _common(opts)
    if run is not None and (common["config"] or common["set"]):
        raise TicketsError("RUN's settings are fixed; drop " + ", ".join(
            k for k, v in (("--config", common["config"]), ("--set", common["set"])) if v)
            + " (without RUN, the flags describe a new dense network to analyse)")
    if run is not None:
        common = {"quiet": common["quiet"]}
    result = api.stability(run, at=at, points=points, reset_bn=reset_bn, seeds=_seeds(seeds), rounds=round_list,
                           controls=_controls(controls), **common, **_flags(opts))
    click.echo(f"stability: {result.path / 'stability' / 'stability.csv'}")
    click.echo(f"report:    {result.report()}")


@main.command()
@click.argument("net_a", type=click.Path(file_okay=False, path_type=Path))
@click.argument("net_b", type=click.Path(file_okay=False, path_type=Path))
@click.option("--curve", default="bezier", show_default=True, help="bezier (quadratic Bezier) or polychain (one bend).")
@click.option("--points", type=int, default=31, show_default=True, help="Evenly spaced t evaluated (at least 3).")
@click.option("--epochs", type=float, help="Epochs the bend trains (default: NET_A's run config's).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the batches and the t drawn per batch.")
@click.option("--set", "sets", multiple=True, metavar="train.KEY=VALUE", help="A train.* key of the bend's training.")
@click.option("--accelerator", help="Lightning accelerator: cpu, gpu, auto, ...")
@click.option("--devices", help="Lightning devices: 1, a device index list, or auto.")
@click.option("--out", default="outputs", show_default=True, help="Folder that holds runs.")
@click.option("--name", help="Run name (default: connect-<curve>-<hash of the networks and settings>).")
@click.option("--quiet", "-q", is_flag=True, help="No progress display.")
@execution_options
def connect(net_a, net_b, curve, points, epochs, seed, sets, accelerator, devices, out, name, quiet, **execution):
    """A curve of low error between two trained networks NET_A and NET_B of one architecture (Garipov et al.).

    NET_A and NET_B are network directories (final.pt and done.json); the bend trains with NET_A's
    run config. Writes connect.csv (errors along the curve and the line), connect.png, a report.
    """
    from tickets import api
    from tickets.config import parse_set

    execution["workers"] = _workers(execution["workers"])
    result = api.connect(net_a, net_b, curve=curve, points=points, epochs=epochs, seed=seed,
                         set=dict(parse_set(s) for s in sets), accelerator=accelerator, devices=_devices(devices),
                         out=out, name=name, quiet=quiet, **{k: v for k, v in execution.items() if v is not None})
    row = json.loads(next(result.path.glob("seed_*/round_0/*/done.json")).read_text())
    click.echo(f"connect: {result.path / 'connect.csv'}")
    click.echo(f"barrier (test error): {100 * row['barrier']:.2f} points along the {curve} curve, "
               f"{100 * row['line_barrier']:.2f} along the straight line")
    click.echo(f"report:  {result.report()}")
    if row.get("status") == "diverged":
        click.echo(f"the curve diverged at iteration {row['diverged_at']} (status diverged in its done.json)", err=True)
        sys.exit(EXIT_DIVERGED)


@main.command()
@click.argument("run", type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", type=int, required=True, help="The seed of the network.")
@click.option("--round", "round_", type=int, required=True, help="The round of the network.")
@click.option("--variant", default="ticket", show_default=True, help="The network of the round: ticket or a control.")
@click.option("--format", "format_", required=True, metavar="FORMAT",
              help="dense (a structured ticket as a smaller network), sparse (CSR Linear layers), torch-prune "
                   "(torch.nn.utils.prune masks, to train on) or onnx.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The file to write (an existing one is replaced atomically).")
def export(run, seed, round_, variant, format_, out):
    """Write one trained network of RUN as a file other code loads (tickets.load_exported, or plain torch)."""
    from tickets import api

    done = api.export(run, seed=seed, round=round_, variant=variant, format=format_, out=out)
    click.echo(f"wrote {done.path} ({done.format}, {done.bytes:,} bytes): {done.description} (logits: max difference "
               f"{done.max_difference:.2g} from the masked network's)")


def entry_point() -> None:
    """The ``tickets`` command: :func:`main`, then a quick exit.

    Once a command is done and its files are closed, tearing down the interpreter's modules
    (torch, Lightning) would take another second or two; exit handlers still run, and
    other threads still get to finish.
    """
    try:
        code = main()  # what click returns is the exit code, as for a console script
    except SystemExit as done:
        code = done.code
    if any(not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        sys.exit(code)  # a thread still working: the usual exit, which waits for it
    if isinstance(code, str):
        print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)


if __name__ == "__main__":  # pragma: no cover
    entry_point()
