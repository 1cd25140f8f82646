"""The busy-CPU warning: /proc/stat arithmetic, when it fires, and that a training run prints it once.

    python -m pytest -q tests/test_cpu_load.py
"""
import pytest
import torch

import mebt.cpu_load as cpu_load
from mebt.distributed import Dist

# Two snapshots of /proc/stat's first line, 100 ticks per core apart on a 2-core machine (200 ticks in all).
BEFORE = "cpu  1000 0 500 8000 100 0 0 0 0 0\ncpu0 1 2 3 4\n"
AFTER_ONE_CORE_BUSY = "cpu  1090 0 510 8095 105 0 0 0 0 0\ncpu0 1 2 3 4\n"   # 100 busy + 100 idle/iowait ticks


def test_cpu_times_counts_idle_and_iowait_as_free():
    assert cpu_load.cpu_times(BEFORE) == (1500, 9600)
    assert cpu_load.cpu_times(AFTER_ONE_CORE_BUSY) == (1600, 9800)


def test_busy_cores_is_the_busy_share_of_the_ticks_times_the_cores(tmp_path, monkeypatch):
    stat = tmp_path / "stat"
    stat.write_text(BEFORE)
    monkeypatch.setattr(cpu_load.time, "sleep", lambda seconds: stat.write_text(AFTER_ONE_CORE_BUSY))
    monkeypatch.setattr(cpu_load.os, "cpu_count", lambda: 2)
    assert cpu_load.busy_cores(path=str(stat)) == pytest.approx(1.0)


def test_only_the_cores_this_process_may_use_are_counted(tmp_path, monkeypatch):
    """In a cpuset (container, job scheduler) a job on another core does not compete with this run."""
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 0 0 100 0 0 0 0\ncpu0 100 0 0 0 0 0 0 0\ncpu1 0 0 0 100 0 0 0 0\n")
    after = "cpu  200 0 0 200 0 0 0 0\ncpu0 200 0 0 0 0 0 0 0\ncpu1 0 0 0 200 0 0 0 0\n"   # cpu0 busy, cpu1 idle
    monkeypatch.setattr(cpu_load.time, "sleep", lambda seconds: stat.write_text(after))
    assert cpu_load.busy_cores(path=str(stat), cpus=[1]) == pytest.approx(0.0)
    stat.write_text("cpu  100 0 0 100 0 0 0 0\ncpu0 100 0 0 0 0 0 0 0\ncpu1 0 0 0 100 0 0 0 0\n")
    assert cpu_load.busy_cores(path=str(stat), cpus=[0]) == pytest.approx(1.0)
    stat.write_text("cpu  100 0 0 100 0 0 0 0\ncpu0 100 0 0 0 0 0 0 0\ncpu1 0 0 0 100 0 0 0 0\n")
    assert cpu_load.busy_cores(path=str(stat), cpus=[0, 1]) == pytest.approx(1.0)


def test_busy_cores_is_none_where_there_is_no_proc_stat(tmp_path):
    assert cpu_load.busy_cores(interval=0, path=str(tmp_path / "missing")) is None
    (tmp_path / "odd").write_text("not a stat file\n")
    assert cpu_load.busy_cores(interval=0, path=str(tmp_path / "odd")) is None


@pytest.mark.parametrize("busy, threads, cores, advice", [
    (0.1, 2, 2, None),                          # idle machine: the default run must stay quiet
    (0.4, 2, 2, None),                          # within the half core of slack
    (None, 2, 2, None),                         # not Linux: nothing known, nothing said
    (1.0, 2, 2, "OMP_NUM_THREADS=1"),           # one job beside a 2-thread run on 2 cores: the 1.3 s steps
    (1.0, 1, 2, None),                          # the advice already taken
    (5.2, 4, 8, "OMP_NUM_THREADS=3"),           # a bigger machine: one thread per free core
    (8.0, 8, 8, "OMP_NUM_THREADS=1"),           # never advise 0 threads
])
def test_busy_warning_fires_only_when_the_threads_do_not_fit(busy, threads, cores, advice):
    warning = cpu_load.busy_warning(busy, threads, cores)
    if advice is None:
        assert warning is None
    else:
        assert warning.startswith("warning: ") and advice in warning and "\n" not in warning


def test_a_cpu_run_warns_once_per_process_and_never_on_gpus_or_ddp_ranks(monkeypatch, capsys):
    monkeypatch.setattr(cpu_load, "busy_cores", lambda cpus=None: 2.0)   # the whole machine is busy
    monkeypatch.setattr(cpu_load, "usable_cpus", lambda: [0, 1])   # a 2-core machine, whatever this one has
    monkeypatch.setattr(cpu_load, "_checked", [])
    cpu_load.warn_if_cpu_busy(Dist(rank=0, world_size=2, device=torch.device("cpu")))   # torchrun: no look
    cpu_load.warn_if_cpu_busy(Dist(device=torch.device("meta")))                        # not a CPU run
    assert capsys.readouterr().err == ""
    cpu_load.warn_if_cpu_busy(Dist(device=torch.device("cpu")))
    cpu_load.warn_if_cpu_busy(Dist(device=torch.device("cpu")))                          # the second stage
    assert capsys.readouterr().err.count("warning: other processes are using 2.0") == 1
