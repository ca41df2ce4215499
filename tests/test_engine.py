"""The engine: one driver for every graph, executors that never change results, checksummed jobs of every kind
(stability copies, supermasks) that `tickets check` verifies and a re-run trains again, and flags a command
does not take refused before anything is written."""
import hashlib
import importlib.util
import io
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

import pytest
from conftest import load, masked_accuracy, read_results, run_cli

HAVE_RAY = importlib.util.find_spec("ray") is not None

# --- the driver, on a hand-made graph ---------------------------------------------------------------------


@dataclass(frozen=True)
class ToyJob:
    """A job that trains nothing: ``state`` says whether it is finished ("done"), damaged or still to run."""

    name: str
    rank: int = 0
    state: str = "todo"
    counted: bool = True

    @property
    def key(self) -> tuple:
        return ("toy", self.name)

    def describe(self) -> str:
        return f"toy {self.name}"

    def finished(self):
        if self.state == "done":
            return self.row(stored=True), []
        if self.state == "damaged":
            return None, ["final.pt does not match its checksum"]
        return None, []

    def row(self, stored: bool = False) -> dict:
        return {"job": self.name, "stored": stored, "weights_remaining": 1.0, "test_acc_at_early_stop": 0.5,
                "early_stop_iter": 3, "final_test_acc": 0.5, "train_seconds": 0.0}

    def run(self, on_eval=None) -> dict:
        assert self.state != "done", f"{self.name} was finished and ran again"
        if on_eval is not None:
            on_eval({"iteration": 1, "test_acc": 0.5})
        return self.row()


class ToyGraph:
    """Roots A (done), B, C, D (damaged), H (not one of the counted networks); A unblocks E; C unblocks F (done),
    which unblocks G. Smaller ``rank`` first."""

    def __init__(self):
        self.ran, self.after_rows, self.evaluated = [], {}, []
        self.jobs = {j.name: j for j in [
            ToyJob("A", 9, "done"), ToyJob("B", 2), ToyJob("C", 1), ToyJob("D", 3, "damaged"),
            ToyJob("H", 5, counted=False), ToyJob("E", 0), ToyJob("F", 9, "done"), ToyJob("G", 4)]}
        self.follow = {"A": ["E"], "C": ["F"], "F": ["G"]}

    def make(self):
        from tickets.engine.graph import Graph

        outer = self

        class Subclass(Graph):  # only what the kinds override; the rest is Graph's
            def expected(self):
                return 7

            def roots(self):
                return [outer.jobs[n] for n in "ABCDH"]

            def after(self, job, row):
                outer.after_rows[job.name] = row
                return [outer.jobs[n] for n in outer.follow.get(job.name, [])]

            def priority(self, job):
                return (job.rank,)

            def counts(self, job):
                return job.counted

            def record(self, job, row):
                outer.ran.append((job.name, row))

        return Subclass()


def test_the_driver_skips_finished_jobs_reruns_damaged_ones_and_follows_priorities():
    from tickets.engine.graph import drive
    from tickets.executors.serial import SerialExecutor
    from tickets.progress import Progress

    toy = ToyGraph()
    graph = toy.make()
    stream = io.StringIO()
    progress = Progress(graph.expected(), stream=stream, quiet=True)
    executor = SerialExecutor(on_eval=lambda job, row: toy.evaluated.append(job.name))
    with progress, executor:
        drive(graph, executor, progress)
    # finished jobs (A, F) never ran, yet what they unblock (E, and G through F) did; the rest by priority
    assert [name for name, _ in toy.ran] == ["E", "C", "B", "D", "G", "H"]
    assert all(row == toy.jobs[name].row() for name, row in toy.ran)  # record() gets what run() returned
    # a skipped job's followers are found from its stored row; a trained one's from the row it returned
    assert toy.after_rows["A"] == toy.jobs["A"].row(stored=True)
    assert toy.after_rows["F"] == toy.jobs["F"].row(stored=True)
    assert toy.after_rows["C"] == toy.jobs["C"].row()
    assert set(toy.after_rows) == set("ABCDEFGH")  # every job, run or skipped, is asked what it unblocks
    assert toy.evaluated == ["E", "C", "B", "D", "G", "H"]  # evaluation rows reach the executor's callback
    assert progress.done == 7 == progress.total  # A, F skipped + B, C, D, E, G trained; H is not counted
    # quiet: the one line is the warning for the damaged job
    assert stream.getvalue().splitlines() == [
        "warning: toy D: final.pt does not match its checksum; training it again"]


def test_the_driver_says_which_jobs_were_already_done_when_not_quiet():
    from tickets.engine.graph import drive
    from tickets.executors.serial import SerialExecutor
    from tickets.progress import Progress

    toy = ToyGraph()
    graph = toy.make()
    stream = io.StringIO()
    progress = Progress(graph.expected(), stream=stream, live=False)
    with progress, SerialExecutor(on_eval=lambda job, row: None) as executor:
        drive(graph, executor, progress)
    lines = stream.getvalue().splitlines()
    assert [line for line in lines if "already done" in line] == ["[1/7] toy A | already done",
                                                                  "[4/7] toy F | already done"]
    assert [line.split("]")[0] for line in lines if line.startswith("[")] == [f"[{i}/7" for i in range(1, 8)]
    assert "toy H | done" in lines  # an uncounted job ends with its own line, outside the count


# --- supermasks: every executor gives the serial results ----------------------------------------------------

SUPERMASK = ["--epochs", "0.3", "--set", "train.eval_every=5", "--seeds", "0,1", "--quiet"]
VARIANT = "supermask_edge_popup"


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def without_timing(rows):
    return [{k: v for k, v in r.items() if k not in ("run", "train_seconds")} for r in rows]


def mask_file(run_dir, seed):
    return run_dir / f"seed_{seed}/round_0/{VARIANT}/mask.pt"


@pytest.fixture(scope="module")
def serial_supermask(tmp_path_factory):
    out = tmp_path_factory.mktemp("sm")
    run_cli("supermask", "--out", out, "--name", "sm", "--workers", "1", *SUPERMASK)
    return out / "sm"


def test_the_serial_supermask_results_are_its_saved_masks(serial_supermask):
    rows = read_results(serial_supermask)
    assert [(r["seed"], r["variant"]) for r in rows] == [("0", VARIANT), ("1", VARIANT)]
    for row in rows:
        seed = int(row["seed"])
        accuracy = masked_accuracy(serial_supermask, load(serial_supermask / f"seed_{seed}/init.pt"),
                                   load(mask_file(serial_supermask, seed)))
        assert accuracy == pytest.approx(float(row["test_acc_at_early_stop"]), abs=1e-6)
    assert sha256(mask_file(serial_supermask, 0)) != sha256(mask_file(serial_supermask, 1))


@pytest.mark.parametrize("way", [["--workers", "2"], ["--executor", "ray"]], ids=["workers2", "ray"])
def test_supermask_gives_the_serial_results_on_every_executor(serial_supermask, tmp_path, way):
    if way[1] == "ray":
        if not HAVE_RAY and not os.environ.get("CI"):
            pytest.skip('Ray is an optional extra (pip install "tickets[ray]"); CI installs it')
        done = subprocess.run([sys.executable, "-m", "tickets.cli", "supermask", "--out", str(tmp_path), "--name",
                               "other", *SUPERMASK, *way], capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
    else:
        run_cli("supermask", "--out", tmp_path, "--name", "other", *SUPERMASK, *way)
    other = tmp_path / "other"
    assert without_timing(read_results(other)) == without_timing(read_results(serial_supermask))
    for seed in (0, 1):
        assert mask_file(other, seed).read_bytes() == mask_file(serial_supermask, seed).read_bytes()
        final_mask = mask_file(other, seed).with_name("final_mask.pt")
        assert final_mask.read_bytes() == mask_file(serial_supermask, seed).with_name("final_mask.pt").read_bytes()


# --- a damaged supermask: check names it, a re-run trains it again ------------------------------------------

def flip_a_byte(path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside a tensor's bytes: the file still loads, with other values
    path.write_bytes(bytes(data))


def test_a_damaged_supermask_is_named_by_check_and_trained_again(serial_supermask, tmp_path):
    run = tmp_path / "sm"
    shutil.copytree(serial_supermask, run)
    mask = mask_file(run, 0)
    original = mask.read_bytes()
    flip_a_byte(mask)
    other_seed = {p: p.stat().st_mtime_ns for p in (run / "seed_1").rglob("*") if p.is_file()}
    found = run_cli("check", run, expect=4)
    assert f"problem: {mask.parent}: mask.pt does not match its checksum" in found.stdout
    assert "1 problem found" in found.stdout
    again = run_cli("supermask", "--out", tmp_path, "--name", "sm", "--workers", "1", *SUPERMASK)
    assert (f"warning: seed 0 | {VARIANT} (signed_constant weights, density 0.5): mask.pt does not match its "
            "checksum; training it again") in again.stderr
    assert again.stderr.count("training it again") == 1  # seed 1 is intact
    assert mask.read_bytes() == original
    assert sha256(mask.with_name("final.pt")) == sha256(mask_file(serial_supermask, 0).with_name("final.pt"))
    assert without_timing(read_results(run)) == without_timing(read_results(serial_supermask))
    assert {p: p.stat().st_mtime_ns for p in other_seed} == other_seed  # seed 1 was not trained again
    assert "no problems found" in run_cli("check", run).stdout


# --- a damaged stability copy ---------------------------------------------------------------------------------

STABILITY = ["--at", "0,5it", "--epochs", "0.3", "--points", "5", "--set", "train.eval_every=5", "--seeds", "0",
             "--workers", "1", "--quiet"]
COPY = "stability/seed_0/round_0/ticket/k_0/copy_0"


def stability_csv(run_dir):
    return (run_dir / "stability" / "stability.csv").read_bytes()


def stability_rows(run_dir) -> list[dict]:
    import csv

    return list(csv.DictReader(io.StringIO(stability_csv(run_dir).decode())))


@pytest.fixture(scope="module")
def stability_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("stab")
    run_cli("stability", "--out", out, "--name", "st", *STABILITY)
    return out / "st"


def test_the_path_ends_are_the_saved_copies(stability_run):
    rows = stability_rows(stability_run)
    assert [(r["round"], r["variant"], r["k"]) for r in rows] == [("0", "ticket", "0"), ("0", "ticket", "5")]
    for row in rows:
        for column, copy in (("err_0.00", 0), ("err_1.00", 1)):
            final = load(stability_run / f"stability/seed_0/round_0/ticket/k_{row['k']}/copy_{copy}/final.pt")
            assert float(row[column]) == pytest.approx(1 - masked_accuracy(stability_run, final, {}), abs=1e-6)


def test_a_damaged_stability_copy_is_named_by_check_and_trained_again(stability_run, tmp_path):
    run = tmp_path / "st"
    shutil.copytree(stability_run, run)
    final = run / COPY / "final.pt"
    flip_a_byte(final)
    untouched = {p: p.stat().st_mtime_ns for p in run.glob("stability/**/final.pt") if p != final}
    found = run_cli("check", run, expect=4)
    assert f"problem: {final.parent}: final.pt does not match its checksum" in found.stdout
    assert "1 problem found" in found.stdout
    again = run_cli("stability", "--out", tmp_path, "--name", "st", *STABILITY)
    assert again.stderr.count("training it again") == 1
    assert ("warning: seed 0 | round 0 | ticket | k=0 | copy 0: final.pt does not match its checksum; "
            "training it again") in again.stderr
    assert sha256(final) == sha256(stability_run / COPY / "final.pt")  # CPU: the same weights again
    assert stability_csv(run) == stability_csv(stability_run)
    assert {p: p.stat().st_mtime_ns for p in untouched} == untouched  # nothing else retrained
    assert "no problems found" in run_cli("check", run).stdout


def test_stability_with_a_relative_out_folder(stability_run, tmp_path, monkeypatch):
    """--out is relative by default (outputs): the copies' checksums name their inputs within the run."""
    monkeypatch.chdir(tmp_path)
    at_5 = [a if a != "0,5it" else "5it" for a in STABILITY]
    run_cli("stability", "--out", "rel", "--name", "st", *at_5)
    assert stability_rows(tmp_path / "rel" / "st") == [r for r in stability_rows(stability_run) if r["k"] == "5"]
    assert "no problems found" in run_cli("check", "rel/st").stdout


# --- flags a command does not take --------------------------------------------------------------------------

@pytest.mark.parametrize("args, flag", [
    (["supermask", "--rounds", "5"], "--rounds"),
    (["supermask", "--criterion", "random"], "--criterion"),
    (["train", "--controls", "reinit"], "--controls"),
], ids=["supermask-rounds", "supermask-criterion", "train-controls"])
def test_a_flag_the_command_does_not_take_is_refused(tmp_path, args, flag):
    result = run_cli(args[0], "--out", tmp_path, "--name", "bad", "--epochs", "0.3", "--quiet", *args[1:], expect=2)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and flag in lines[0], result.stderr
    assert "Traceback" not in result.output
    assert not any(tmp_path.iterdir())
