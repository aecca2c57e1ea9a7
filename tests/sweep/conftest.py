"""Settings of the sweep tests."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="package")
def one_thread():
    """Small models: one thread is faster, and immune to a busy machine's other cores
    (the batched and the sequential runs agree on any number of threads)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
