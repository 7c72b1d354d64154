"""Format 1's name for the release reader/writer: everything lives in speech.bundle now.
Kept so existing imports work; new code imports speech.bundle."""
from .bundle import (CONFIG_NAME, FORMAT, FORMAT_VERSION, WEIGHTS_NAME, CheckpointError,  # noqa: F401
                     load_release, read_config, save_release)
