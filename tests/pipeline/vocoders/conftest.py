"""Vocoder tests run torch on one thread: their models are many small ops, and on a shared
2-core machine extra intra-op threads only wait on each other (measured: 10-15x slower)."""

from tests.conftest import torch_threads

one_thread = torch_threads(1)
