"""Third-party plugins through the real entry-point path, with in-process distributions.

Each test writes modules and ``<name>-<version>.dist-info/`` folders (METADATA and
entry_points.txt) into a temporary folder on ``sys.path``: to ``importlib.metadata`` and to
tickets they are installed distributions, but nothing is pip-installed.
"""
import csv
import json
import re
from pathlib import Path

import pytest
import tomllib
import torch
from conftest import invoke

from tickets import plugins
from tickets.errors import TicketsError
from tickets.registry import Provider

DOCS = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"
TINY_PRUNE = ["prune", "--rounds", "2", "--epochs", "0.2", "--controls", "none", "--set", "train.eval_every=5",
              "--seeds", "0", "--quiet"]

WORKING = '''
import tickets


def demo_score(ctx):
    """Demo: the negated magnitude."""
    return {n: -w.abs() for n, w in ctx.final.items()}


@tickets.hookimpl
def register_criteria(register):
    register("demo_crit", demo_score, description="demo criterion description")


@tickets.hookimpl
def register_optimizers(register):
    import torch
    register("demo_sgd", lambda params, lr: torch.optim.SGD(params, lr=lr))
'''

BROKEN = {
    "import_error": ("raise ImportError('needs the frobnicate package')",
                     "import failed: ImportError: needs the frobnicate package"),
    "misspelled_hook": ('''
import tickets

@tickets.hookimpl
def register_criterias(register):
    register("x", lambda ctx: {})
''', "invalid hook: unknown hook 'register_criterias' (did you mean 'register_criteria'?)"),
    "wrong_argument": ('''
import tickets

@tickets.hookimpl
def register_criteria(registr):
    registr("x", lambda ctx: {})
''', "invalid hook: register_criteria(registr) must take one argument named 'register'"),
    "unmarked_hook": ('''
def register_criteria(register):
    register("x", lambda ctx: {})
''', "invalid hook: register_criteria is not marked with @tickets.hookimpl"),
    "raises_midway": ('''
import tickets

@tickets.hookimpl
def register_criteria(register):
    register("half_registered", lambda ctx: {})
    raise RuntimeError("boom")
''', "register_criteria raised RuntimeError: boom"),
    "not_callable": ('''
import tickets

@tickets.hookimpl
def register_optimizers(register):
    register("not_a_function", 42)
''', "registered optimizer 'not_a_function' as a int, which is not callable"),
}


def load(**kwargs):
    lines: list[str] = []
    loaded = plugins.load_plugins(warn=lines.append, **kwargs)
    return loaded, lines


def install_demo(site):
    site.install("tickets-demo", "1.2.3", {"demo_plugin": WORKING}, {"demo": "demo_plugin"})


def install_broken(site, case):
    source, _ = BROKEN[case]
    site.install("tickets-broken", "0.0.1", {f"broken_{case}": source}, {"broken": f"broken_{case}"})


def test_working_plugin_resolves_and_is_listed(site):
    install_demo(site)
    loaded, lines = load()
    assert lines == []
    entry = loaded.registry.entry("criteria", "demo_crit")
    assert entry.provider == Provider("demo", "tickets-demo", "1.2.3")
    assert entry.description == "demo criterion description"
    assert loaded.registry.entry("optimizers", "demo_sgd").provider.distribution == "tickets-demo"
    assert loaded.registry.entry("criteria", "magnitude").provider.distribution == "tickets"
    names = [p.name for p in loaded.plugins]
    assert names.index("demo") > max(names.index(b) for b in plugins.BUILTIN_MODULES)  # built-ins first

    text = invoke("plugins")
    assert text.exit_code == 0, text.output
    assert "demo  [tickets-demo 1.2.3]  active" in text.stdout
    assert re.search(r"criteria\s+demo_crit\s+demo criterion description", text.stdout)
    assert "tickets.builtin.criteria  [built-in" in text.stdout

    only_optimizers = invoke("plugins", "--kind", "optimizers").stdout
    assert "demo_sgd" in only_optimizers and "demo_crit" not in only_optimizers

    data = json.loads(invoke("plugins", "--json").stdout)
    demo = next(p for p in data["plugins"] if p["name"] == "demo")
    assert (demo["distribution"], demo["version"], demo["status"], demo["builtin"]) == ("tickets-demo", "1.2.3",
                                                                                      "active", False)
    assert demo["provides"]["criteria"] == [{"name": "demo_crit", "description": "demo criterion description"}]
    assert data["conflicts"] == []


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_plugin_is_one_warning_and_the_rest_works(site, case):
    install_demo(site)
    install_broken(site, case)
    reason = BROKEN[case][1]
    loaded, lines = load()
    assert len(lines) == 1
    assert "tickets-broken 0.0.1" in lines[0] and reason in lines[0], lines[0]
    broken = next(p for p in loaded.plugins if p.name == "broken")
    assert (broken.status, broken.provides) == ("failed", {})
    assert reason in broken.reason
    assert loaded.registry.entry("criteria", "demo_crit").provider.plugin == "demo"
    assert loaded.registry.entry("criteria", "magnitude")
    with pytest.raises(TicketsError, match="half_registered"):  # all or nothing
        loaded.registry.entry("criteria", "half_registered")

    listed = invoke("plugins")
    assert listed.exit_code == 0
    assert f"broken  [tickets-broken 0.0.1]  failed: {reason}" in listed.stdout


def test_broken_plugin_through_the_cli(site, tmp_path):
    install_demo(site)
    install_broken(site, "import_error")
    result = invoke("prune", "--criterion", "magnitud", "--out", tmp_path / "runs")
    assert result.exit_code == 2
    warnings = [line for line in result.stderr.splitlines() if line.startswith("tickets: warning:")]
    assert len(warnings) == 1 and "tickets-broken 0.0.1" in warnings[0]
    error = result.stderr.splitlines()[-1]
    assert "unknown criterion 'magnitud' (did you mean 'magnitude'?)" in error
    assert re.search(r"known criteria: .*demo_crit.*magnitude.*random", error)
    assert "plugins that failed to load: broken (tickets-broken 0.0.1): import failed: ImportError" in error
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("how", ["flag", "env"])
def test_strict_mode_exits_2_with_the_reason(site, how, tmp_path):
    install_demo(site)
    install_broken(site, "wrong_argument")
    for command in (["plugins"], ["runs", "--out", tmp_path]):
        if how == "flag":
            result = invoke("--strict-plugins", *command)
        else:
            result = invoke(*command, env={"TICKETS_STRICT_PLUGINS": "1"})
        assert result.exit_code == 2
        assert "plugin 'broken' from tickets-broken 0.0.1 failed to load" in result.stderr
        assert BROKEN["wrong_argument"][1] in result.stderr
    assert invoke("plugins").exit_code == 0  # not strict: listed, not fatal


def test_two_plugins_claiming_one_name(site, tmp_path):
    source = '''
import tickets

@tickets.hookimpl
def register_criteria(register):
    register("shared", lambda ctx: {{n: w.abs() for n, w in ctx.final.items()}})
    register("{own}", lambda ctx: {{n: w.abs() for n, w in ctx.final.items()}})
'''
    # the same entry-point name in two distributions is fine; the same component name is not
    site.install("tickets-a", "1.0", {"clash_a": source.format(own="only_a")}, {"clash": "clash_a"})
    site.install("tickets-b", "2.0", {"clash_b": source.format(own="only_b")}, {"clash": "clash_b"})
    loaded, lines = load()
    both = "by clash (tickets-a 1.0) and by clash (tickets-b 2.0)"
    assert len(lines) == 1 and both in lines[0]
    with pytest.raises(TicketsError, match=re.escape(f"criterion 'shared' is registered twice: {both}")):
        loaded.registry.entry("criteria", "shared")
    assert loaded.registry.entry("criteria", "only_a") and loaded.registry.entry("criteria", "only_b")

    result = invoke("prune", "--criterion", "shared", "--out", tmp_path)
    assert result.exit_code == 2 and both in result.stderr
    assert "conflict: criterion 'shared' is registered twice" in invoke("plugins").stdout
    assert both in invoke("--strict-plugins", "plugins").stderr


def test_a_plugin_cannot_take_a_builtin_name(site):
    site.install("tickets-greedy", "0.1", {"greedy": '''
import tickets

@tickets.hookimpl
def register_criteria(register):
    register("magnitude", lambda ctx: {})
'''}, {"greedy": "greedy"})
    loaded, _ = load()
    with pytest.raises(TicketsError, match=re.escape("by tickets.builtin.criteria (tickets 0.1.0) and by greedy "
                                                     "(tickets-greedy 0.1)")):
        loaded.registry.entry("criteria", "magnitude")


def test_tickets_plugins_selects_plugins(site):
    install_demo(site)
    install_broken(site, "import_error")

    loaded, lines = load(only="none")
    assert lines == []
    assert {p.name: p.status for p in loaded.plugins}.get("demo") == "skipped"
    with pytest.raises(TicketsError, match=r"not loaded because of TICKETS_PLUGINS: .*demo \(tickets-demo 1\.2\.3\)"):
        loaded.registry.entry("criteria", "demo_crit")
    assert loaded.registry.entry("criteria", "magnitude")  # built-ins always load

    for selection in ("demo", "tickets-demo", "TICKETS_DEMO"):  # entry-point or distribution name
        loaded, lines = load(only=selection)
        assert lines == []  # the broken plugin was not even imported
        status = {p.name: p.status for p in loaded.plugins}
        assert (status["demo"], status["broken"]) == ("active", "skipped")
        assert loaded.registry.entry("criteria", "demo_crit")

    _, lines = load(only="demo,nosuch")
    assert len(lines) == 1 and "TICKETS_PLUGINS names nosuch" in lines[0]

    listed = invoke("plugins", env={"TICKETS_PLUGINS": "none"}).stdout
    assert "demo  [tickets-demo 1.2.3]  skipped: not listed in TICKETS_PLUGINS=none" in listed


def _docs_file(name: str) -> str:
    """The code block that follows ``<!-- file: NAME -->`` in docs/plugins.md."""
    text = DOCS.read_text()
    match = re.search(rf"<!-- file: {re.escape(name)} -->\s*```\w*\n(.*?)```", text, re.S)
    assert match, f"docs/plugins.md has no block for {name}"
    return match.group(1)


def test_the_docs_plugin_ranks_as_magnitude_does(site, tmp_path):
    """Done: a plugin written from the docs gives masks identical to --criterion magnitude."""
    project = tomllib.loads(_docs_file("pyproject.toml"))["project"]
    module = _docs_file("tickets_abs_final.py")
    entry_points = project["entry-points"]["tickets"]
    site.install(project["name"], project["version"], {"tickets_abs_final": module}, entry_points)
    assert "abs_final  [tickets-abs-final 0.1.0]  active" in invoke("plugins", "--kind", "criteria").stdout

    for name, criterion in (("a", "magnitude"), ("b", "abs_final")):
        result = invoke(*TINY_PRUNE, "--criterion", criterion, "--schedule", "exp_decay", "--out", tmp_path,
                        "--name", name, env={"TICKETS_STRICT_PLUGINS": "1"})
        assert result.exit_code == 0, result.output
    for round_ in (1, 2):
        a = torch.load(tmp_path / "a" / "seed_0" / f"round_{round_}" / "mask.pt", weights_only=True)
        b = torch.load(tmp_path / "b" / "seed_0" / f"round_{round_}" / "mask.pt", weights_only=True)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert sum(int(m.sum()) for m in b.values()) < sum(m.numel() for m in b.values())

    # exp_decay halves the learning rate every epoch of 58 iterations: lr(t) = 1.2e-3 * 0.5 ** (t / 58)
    with (tmp_path / "b" / "seed_0" / "round_1" / "ticket" / "metrics.csv").open() as handle:
        lrs = {int(r["iteration"]): float(r["lr"]) for r in csv.DictReader(handle)}
    assert lrs[0] == 1.2e-3 and lrs[10] == pytest.approx(1.2e-3 * 0.5 ** (10 / 58), rel=1e-12)

    components = json.loads((tmp_path / "b" / "run.json").read_text())["components"]
    assert components["criterion"] == {"name": "abs_final", "plugin": "abs_final",
                                       "distribution": "tickets-abs-final", "version": "0.1.0"}
    assert components["model"]["distribution"] == "tickets"
    assert components["schedule"]["distribution"] == "tickets-abs-final"
