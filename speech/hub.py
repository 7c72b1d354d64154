"""Model references: a local folder, a Hugging Face Hub repo id, or the embedded default.

`owner/name` or `owner/name@revision` is downloaded with `huggingface_hub` into its usual cache
(HF_HOME, HF_ENDPOINT, HF_HUB_OFFLINE and HF_TOKEN are honoured). When the Hub cannot be reached
and nothing is cached, the embedded default in `checkpoints/` answers instead, with one log line.
A repo that the Hub says does not exist is an error, not a fallback: a typo should be loud. So is a
local-looking path that does not exist (`./x`, `../x`, `/x`, `~/x`, `a/b/c`, or `dir/x` where `dir`
is a local folder): it never reaches the Hub, and never falls back to the embedded default.
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Optional

log = logging.getLogger("speech")

CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints"
if not CHECKPOINTS.is_dir():  # installed with pip: the same release folders are package data
    CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"
DEFAULTS = {
    "stt": CHECKPOINTS / "ds2-ko",
    "gender": CHECKPOINTS / "gender-child-ko",
    "speaker": CHECKPOINTS / "speaker-campplus",
    "tv": CHECKPOINTS / "tv-ko",
}
# Files a release folder may hold; nothing else is fetched.
ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.md", "*.arpa", "*.bin", "*.txt", "*.model"]
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")


class ModelNotFoundError(ValueError):
    pass


class HubUnreachableError(ModelNotFoundError):
    """The Hub could not be reached (or offline mode) and nothing was cached."""


def default_model(kind: str) -> Path:
    if kind not in DEFAULTS:
        raise ValueError(f"Unknown model kind {kind!r}; kinds = {sorted(DEFAULTS)}")
    return DEFAULTS[kind]


def is_repo_id(ref: str) -> bool:
    return bool(_REPO_ID.match(ref)) and not ref.startswith((".", "/", "~"))


def tilde(text) -> str:
    """A path (or a command) as reports write it: the home folder as `~`, so no machine's path is recorded."""
    return str(text).replace(str(Path.home()), "~")


def looks_local(ref: str) -> bool:
    """Whether `ref` is meant as a local path rather than a Hub repo id."""
    if ref.startswith((".", "/", "~")) or (os.sep != "/" and os.sep in ref) or Path(ref).is_absolute():
        return True
    if "/" not in ref:
        return False
    if not is_repo_id(ref):   # a/b/c, a/b/ ...
        return True
    owner = ref.split("/", 1)[0]
    return Path(owner).is_dir()   # runs/x, checkpoints/x: a folder here, not a Hub owner


def resolve_model(ref: Optional[str], kind: str, token: Optional[str] = None,
                  allow_patterns: Optional[list] = None, fallback: bool = True) -> Path:
    """Return a local folder for `ref` (None/''/'default' = the embedded default of `kind`)."""
    if ref is None or str(ref).strip() in ("", "default"):
        return default_model(kind) if kind in DEFAULTS else _no_default(kind)
    ref = str(ref).strip()
    path = Path(ref).expanduser()
    if path.exists():
        return path.parent if path.is_file() else path
    if looks_local(ref):
        where = f" ({path})" if str(path) != ref else ""
        raise ModelNotFoundError(f"Model path {ref!r}{where} does not exist (a local path; a Hub repo id is owner/name)")
    if not is_repo_id(ref):
        raise ModelNotFoundError(
            f"Model {ref!r} is neither an existing local path nor a Hub repo id (owner/name or owner/name@revision)")
    repo_id, _, revision = ref.partition("@")
    return _download(repo_id, revision or None, token, allow_patterns or ALLOW_PATTERNS, kind, fallback)


def _no_default(kind):
    raise ModelNotFoundError(f"No embedded default for {kind!r}; pass a local path or a Hub repo id")


def _download(repo_id, revision, token, allow_patterns, kind, fallback) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    try:
        return Path(snapshot_download(repo_id, revision=revision, token=token or os.environ.get("HF_TOKEN"),
                                      allow_patterns=allow_patterns))
    except (RepositoryNotFoundError, GatedRepoError) as e:
        raise ModelNotFoundError(f"Hub repo {repo_id!r} was not found or is private (pass a token)") from e
    except RevisionNotFoundError as e:
        raise ModelNotFoundError(f"Hub repo {repo_id!r} has no revision {revision!r}") from e
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as e:
        # Unreachable Hub (or offline mode) and no cached copy.
        if not fallback or kind not in DEFAULTS:
            raise HubUnreachableError(f"Could not download {repo_id!r} from the Hugging Face Hub: {e}") from e
        log.warning("Hugging Face Hub unreachable for %s (%s); using the embedded default %s",
                    repo_id, type(e).__name__, DEFAULTS[kind].name)
        return DEFAULTS[kind]
