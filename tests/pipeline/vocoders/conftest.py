"""Vocoder tests run torch on one thread: their models are many small ops, and on a shared
2-core machine extra intra-op threads only wait on each other (measured: 10-15x slower)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
