"""Shared pytest set-up.

The models in the tests are tiny: per-op thread start-up costs more than it saves, and on a shared
2-core machine two OpenMP threads can make small ops 10x slower. One thread keeps every test fast
and its timing stable; subprocesses inherit it through OMP_NUM_THREADS.
"""
import os

import pytest
import torch

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
