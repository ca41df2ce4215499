"""tickets.store: done.json checksums, damage reports, atomic writes, results.csv (rebuilt and added to), the lock.

The expected values are computed here with hashlib, json and csv, never with the store's own helpers."""
import csv
import errno
import hashlib
import io
import json
import os
import stat
import subprocess
import sys

import pytest
import torch

from tickets import store as store_mod
from tickets.errors import TicketsError
from tickets.store import RESULT_COLUMNS, RunLock, RunStore

# seeds and rounds of two digits: a string sort would put 10 before 2
SEEDS, ROUNDS = (10, 2), (10, 0, 1)
VARIANTS = ("reinit", "ticket", "random_prune", "a_control")  # "a_control" sorts before "ticket" by name


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def row_for(seed, round_, variant) -> dict:
    """A results.csv row with every column, some floats, one missing value (None: an empty cell)."""
    row = {c: f"{c}-{seed}-{round_}-{variant}" for c in RESULT_COLUMNS}
    row.update(run="demo", seed=seed, round=round_, variant=variant, weights_remaining=0.8 ** round_,
               params_remaining=1000 - round_, final_test_acc=0.5 + seed / 100, iterations=17 + round_,
               train_seconds=1.25, status="ok", acc_at_init=None)
    return row


def finish_job(store: RunStore, seed, round_, variant, **changes):
    """A job directory with small real files, marked done by the store itself; its directory."""
    job = store.network_dir(seed, round_, variant)
    job.mkdir(parents=True, exist_ok=True)
    (job / "metrics.csv").write_text(f"iteration,test_acc\n0,0.1\n5,{seed}.{round_}\n")
    torch.save({"w": torch.full((3,), float(seed + round_))}, job / "final.pt")
    init = store.seed_dir(seed) / "init.pt"
    if not init.exists():
        init.write_bytes(f"theta_0 of seed {seed}".encode())
    store.mark_done(job, {**row_for(seed, round_, variant), **changes}, inputs=[init])
    return job


def expected_results(run_dir) -> bytes:
    """results.csv built here from the done.json files: their rows without the checksums, sorted by
    seed, round, ticket first, then variant name; a header; missing values empty."""
    rows = []
    for done in run_dir.glob("seed_*/round_*/*/done.json"):
        record = json.loads(done.read_text())
        rows.append({k: v for k, v in record.items() if k not in ("files", "inputs")})
    rows.sort(key=lambda r: (int(r["seed"]), int(r["round"]), 0 if r["variant"] == "ticket" else 1, r["variant"]))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(RESULT_COLUMNS)
    for r in rows:
        writer.writerow(["" if r.get(c) is None else r[c] for c in RESULT_COLUMNS])
    return out.getvalue().encode()


@pytest.fixture
def store(tmp_path):
    s = RunStore(tmp_path, "demo")
    s.dir.mkdir()
    return s


def all_jobs():
    return [(s, r, v) for s in SEEDS for r in ROUNDS for v in VARIANTS]


# done.json and its checksums --------------------------------------------------------------------------
def test_mark_done_records_the_row_and_the_sha256_of_every_file_and_input(store):
    assert not RunStore.is_done(store.network_dir(2, 1, "ticket"))
    job = finish_job(store, 2, 1, "ticket")
    (job / ".final.pt.123.tmp").write_bytes(b"a temporary file is not part of the job")
    store.mark_done(job, row_for(2, 1, "ticket"), inputs=[store.seed_dir(2) / "init.pt"])
    assert RunStore.is_done(job)
    record = json.loads((job / "done.json").read_text())
    assert record["files"] == {"final.pt": sha((job / "final.pt").read_bytes()),
                               "metrics.csv": sha((job / "metrics.csv").read_bytes())}
    assert record["inputs"] == {"seed_2/init.pt": sha(b"theta_0 of seed 2")}
    expected_row = json.loads(json.dumps(row_for(2, 1, "ticket")))
    assert {k: v for k, v in record.items() if k not in ("files", "inputs")} == expected_row
    assert store.intact_row(job) == (expected_row, [])


def test_sha256_file_matches_hashlib_on_a_file_larger_than_one_read(tmp_path):
    data = torch.randint(0, 256, (3 * (1 << 20) + 17,), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    path = tmp_path / "big.bin"
    path.write_bytes(data.numpy().tobytes())
    assert store_mod.sha256_file(path) == sha(path.read_bytes())
    (tmp_path / "empty").write_bytes(b"")
    assert store_mod.sha256_file(tmp_path / "empty") == sha(b"")


def test_a_flipped_byte_is_reported_with_the_files_name(store):
    job = finish_job(store, 2, 0, "ticket")
    data = bytearray((job / "final.pt").read_bytes())
    data[len(data) // 2] ^= 0x01
    (job / "final.pt").write_bytes(bytes(data))
    assert store.damaged_files(job) == ["final.pt does not match its checksum"]
    assert store.intact_row(job) == (None, ["final.pt does not match its checksum"])


def test_a_missing_file_is_reported_as_missing(store):
    job = finish_job(store, 2, 0, "ticket")
    (job / "metrics.csv").unlink()
    assert store.damaged_files(job) == ["metrics.csv is missing"]
    row, problems = store.intact_row(job)
    assert row is None and problems == ["metrics.csv is missing"]


def test_an_unfinished_job_has_no_row_and_no_problems(store):
    job = store.network_dir(2, 0, "ticket")
    job.mkdir(parents=True)
    (job / "final.pt").write_bytes(b"half a network")
    assert not RunStore.is_done(job)
    assert store.intact_row(job) == (None, [])


def test_an_unreadable_done_json_is_a_problem_not_a_crash(store):
    job = finish_job(store, 2, 0, "ticket")
    (job / "done.json").write_text('{"seed": 2, "fi')
    assert store.damaged_files(job) == ["done.json cannot be read"]
    assert store.intact_row(job) == (None, ["done.json cannot be read"])


def test_a_changed_shared_input_is_reported_with_its_name(store):
    finish_job(store, 2, 0, "ticket")
    finish_job(store, 2, 1, "ticket")
    assert store.damaged_inputs() == []
    (store.seed_dir(2) / "init.pt").write_bytes(b"theta_0 of seed 3")
    [(name, problem)] = store.damaged_inputs()
    assert name == "seed_2/init.pt" and problem.startswith("does not match its checksum")
    (store.seed_dir(2) / "init.pt").unlink()
    [(name, problem)] = store.damaged_inputs()
    assert name == "seed_2/init.pt" and problem.startswith("is missing")


# atomic writes ---------------------------------------------------------------------------------------
def test_atomic_writes_leave_only_the_files_written(tmp_path):
    store_mod.atomic_write_bytes(tmp_path / "a" / "b.bin", b"\x00\x01")
    store_mod.atomic_write_text(tmp_path / "a" / "c.txt", "text")
    store_mod.atomic_write_json(tmp_path / "a" / "d.json", {"x": [1, 2]})
    store_mod.atomic_torch_save({"w": torch.ones(2)}, tmp_path / "a" / "e.pt")
    store_mod.atomic_write_bytes(tmp_path / "a" / "b.bin", b"again")  # replacing a file
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["b.bin", "c.txt", "d.json", "e.pt"]
    assert (tmp_path / "a" / "b.bin").read_bytes() == b"again"
    assert json.loads((tmp_path / "a" / "d.json").read_text()) == {"x": [1, 2]}
    assert torch.equal(torch.load(tmp_path / "a" / "e.pt", weights_only=True)["w"], torch.ones(2))


def test_atomic_writes_get_the_mode_open_gives_under_the_umask(tmp_path):
    """Files of a run are readable by whoever could read a file the user wrote by hand (not mkstemp's 0600)."""
    store_mod.atomic_write_text(tmp_path / "results.csv", "seed\n")
    with open(tmp_path / "by_hand.csv", "w") as handle:
        handle.write("seed\n")
    mode = stat.S_IMODE((tmp_path / "results.csv").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "by_hand.csv").stat().st_mode)


def test_a_failed_write_keeps_the_old_file_leaves_no_temporary_and_names_the_file(tmp_path, monkeypatch):
    target = tmp_path / "results.csv"
    target.write_bytes(b"old rows\n")

    def full_disk(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store_mod.os, "replace", full_disk)
    with pytest.raises(OSError) as caught:
        store_mod.atomic_write_bytes(target, b"new rows\n")
    monkeypatch.undo()
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(target)
    assert target.read_bytes() == b"old rows\n"
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]


# results.csv -----------------------------------------------------------------------------------------
def test_rebuild_results_is_the_done_json_rows_in_order(store):
    for job in all_jobs():
        finish_job(store, *job)
    store.rebuild_results()
    assert store.results_path.read_bytes() == expected_results(store.dir)
    with store.results_path.open() as handle:
        keys = [(r["seed"], r["round"], r["variant"]) for r in csv.DictReader(handle)]
    assert keys[:5] == [("2", "0", "ticket"), ("2", "0", "a_control"), ("2", "0", "random_prune"),
                        ("2", "0", "reinit"), ("2", "1", "ticket")]
    assert keys[-1] == ("10", "10", "reinit") and len(keys) == len(set(keys)) == len(all_jobs())
    assert store.results_problem() is None


def test_rebuild_results_heals_a_damaged_results_csv_and_skips_unfinished_jobs(store):
    for job in all_jobs()[:6]:
        finish_job(store, *job)
    unfinished = store.network_dir(2, 0, "ticket")
    unfinished.mkdir(parents=True)
    (unfinished / "final.pt").write_bytes(b"no done.json yet")
    store.results_path.write_text("run,seed\ngarbage,1\n")
    assert store.results_problem() == "differs from the rows in the networks' done.json"
    store.rebuild_results()
    assert store.results_path.read_bytes() == expected_results(store.dir)
    assert store.results_problem() is None


def test_add_result_after_rebuild_gives_the_bytes_of_a_full_rebuild(store, tmp_path):
    jobs = all_jobs()
    for job in jobs[::2]:  # half the networks finished before the driver started
        finish_job(store, *job)
    store.rebuild_results()
    for job in jobs[1::2]:  # the others finish one by one, in no particular order
        store.add_result(finish_job(store, *job))
        assert store.results_path.read_bytes() == expected_results(store.dir)
    fresh = RunStore(tmp_path, "demo")
    fresh.rebuild_results()
    assert fresh.results_path.read_bytes() == expected_results(store.dir)


def test_add_result_as_the_first_call_reads_every_finished_job(store):
    for job in all_jobs()[:5]:
        finish_job(store, *job)
    driver = RunStore(store.root, store.name)  # a new driver process: nothing read yet
    driver.add_result(finish_job(store, 10, 1, "ticket"))
    assert driver.results_path.read_bytes() == expected_results(store.dir)


def test_add_result_of_a_retrained_network_replaces_its_row(store):
    for job in all_jobs()[:4]:
        finish_job(store, *job)
    store.rebuild_results()
    store.add_result(finish_job(store, 10, 10, "ticket", final_test_acc=0.99))  # first time
    store.add_result(finish_job(store, 10, 10, "ticket", final_test_acc=0.42))  # trained again (damaged files)
    assert store.results_path.read_bytes() == expected_results(store.dir)
    with store.results_path.open() as handle:
        rows = [r for r in csv.DictReader(handle) if (r["seed"], r["round"], r["variant"]) == ("10", "10", "ticket")]
    assert [r["final_test_acc"] for r in rows] == ["0.42"]


# the run lock ------------------------------------------------------------------------------------------
def test_the_lock_refuses_a_second_holder_with_one_line_naming_the_process(store):
    with RunLock(store.dir):
        assert (store.dir / ".lock").read_text() == str(os.getpid())
        with pytest.raises(TicketsError) as caught:
            with RunLock(store.dir):
                pass  # pragma: no cover
        message = str(caught.value)
        assert "\n" not in message and f"process {os.getpid()}" in message and str(store.dir) in message
    assert not (store.dir / ".lock").exists()
    with RunLock(store.dir):  # free again once released
        pass


def test_a_lock_held_by_another_live_process_is_refused(store):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (store.dir / ".lock").write_text(str(holder.pid))
        with pytest.raises(TicketsError, match=f"in use by process {holder.pid};"):
            with RunLock(store.dir):
                pass  # pragma: no cover
        assert (store.dir / ".lock").read_text() == str(holder.pid)  # the holder's lock is left alone
    finally:
        holder.kill()
        holder.wait()
    with RunLock(store.dir):  # its process is gone: the stale lock is taken over
        assert (store.dir / ".lock").read_text() == str(os.getpid())
    assert not (store.dir / ".lock").exists()
