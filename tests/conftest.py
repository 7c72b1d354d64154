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


def pytest_runtest_setup(item):
    """`@pytest.mark.whisper_base(folder, file)`: fail when Whisper base is missing, skip only when
    SPEECH_TEST_NO_WHISPER says it is absent on purpose (tests/needs.py)."""
    mark = item.get_closest_marker("whisper_base")
    if mark is not None:
        from tests.needs import require_whisper_base

        require_whisper_base(*mark.args, **mark.kwargs)
