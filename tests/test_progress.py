"""Progress: plain lines when the output is not a terminal, a live display on one, and the estimated time left."""
import io

from conftest import TINY, run_cli
from rich.console import Console

from tickets.progress import Progress, duration


class Clock:
    """A clock the test moves by hand."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


ROW = {"weights_remaining": 0.8, "test_acc_at_early_stop": 0.9, "early_stop_iter": 40, "final_test_acc": 0.89,
       "train_seconds": 40.0}


def evaluation(iteration, acc=0.5):
    return {"iteration": iteration, "test_acc": acc, "val_loss": 1.0}


def test_time_left_is_the_mean_network_time_times_the_networks_left():
    clock = Clock()
    p = Progress(10, stream=io.StringIO(), clock=clock, live=False)
    assert p.eta() is None  # nothing to go by yet
    p.skip("a")
    p.skip("b")  # 2 of 10 already done: they cost no time
    p.start("c", 100)
    p.update("c", evaluation(0))
    assert p.eta() is None
    clock.now = 10.0
    p.update("c", evaluation(25))  # a quarter done in 10 s: a network takes 40 s
    assert p.eta() == 8 * 40 - 10  # 8 networks left, the running one 10 s into its 40
    clock.now = 40.0
    p.finish("c", ROW)
    assert p.eta() == 7 * 40
    p.start("d", 100)
    clock.now = 50.0
    assert p.eta() == 7 * 40 - 10
    clock.now = 100.0  # d runs longer than the mean: it counts as nearly done, never as negative time
    assert p.eta() == 6 * 40
    p.finish("d", ROW)  # mean of 40 s and 60 s
    assert p.eta() == 6 * 50
    p.drop(6)  # the rest of a chain ends: nothing left
    assert p.eta() == 0


def test_plain_output_is_one_line_per_finished_network():
    clock = Clock()
    out = io.StringIO()
    p = Progress(3, stream=out, clock=clock)  # a StringIO is not a terminal
    assert not p.live
    with p:
        p.skip("seed 0 | round 0/2 | ticket")
        p.start("seed 0 | round 1/2 | ticket", 100)
        p.update("seed 0 | round 1/2 | ticket", evaluation(50))
        clock.now = 30.0
        p.finish("seed 0 | round 1/2 | ticket", ROW)
        p.warn("something to know")
    assert out.getvalue().splitlines() == [
        "[1/3] seed 0 | round 0/2 | ticket | already done",
        "[2/3] seed 0 | round 1/2 | ticket | 80.0% weights | test acc 90.00% @ it 40 (final 89.00%) | 40.0s"
        " | elapsed 30s, about 30s left",
        "warning: something to know",
    ]


def test_quiet_prints_only_warnings():
    out = io.StringIO()
    p = Progress(2, stream=out, quiet=True)
    p.start("a", 10)
    p.finish("a", ROW)
    p.warn("diverged")
    assert out.getvalue() == "warning: diverged\n"


def test_live_display_shows_done_total_running_networks_and_time():
    clock = Clock()
    p = Progress(10, stream=io.StringIO(), clock=clock, live=True)
    p.skip("seed 0 | round 0/2 | ticket")
    p.start("seed 0 | round 1/2 | reinit", 200)
    p.update("seed 0 | round 1/2 | reinit", evaluation(0))
    clock.now = 125.0
    p.update("seed 0 | round 1/2 | reinit", evaluation(100, acc=0.8531))
    console = Console(file=io.StringIO(), width=120)
    console.print(p.render())
    text = console.file.getvalue()
    assert "1/10 networks done" in text and "elapsed 2m05s" in text
    assert "left about 35m25s" in text  # 9 networks of 250 s each, less the 125 s spent
    assert "seed 0 | round 1/2 | reinit" in text and "it 100/200" in text and "test acc 85.31%" in text


def test_duration():
    assert [duration(s) for s in (0, 42.4, 60, 245, 3600, 7625)] == ["0s", "42s", "1m00s", "4m05s", "1h00m", "2h07m"]


def test_a_run_prints_one_line_per_network_when_not_a_terminal(tmp_path):
    result = run_cli("prune", "--out", tmp_path, "--name", "lines", "--rounds", "1", "--controls", "reinit",
                     *TINY[:-1])
    lines = result.stderr.splitlines()
    assert [line.split(" | ")[1:3] for line in lines] == [["round 0/1", "ticket"], ["round 1/1", "ticket"],
                                                         ["round 1/1", "reinit"]]
    assert lines[0].startswith("[1/3] seed 0") and lines[2].startswith("[3/3] seed 0")
    assert "left" in lines[0] and "left" not in lines[2]
