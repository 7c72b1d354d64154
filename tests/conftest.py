import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread: on a busy machine (a training run in the background, the app server
    beside the test process) more threads make inference far slower, not faster."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
