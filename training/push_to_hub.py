"""Publish a release folder (model.safetensors, config.json, model card README.md, optional LM) as a
Hugging Face Hub model repo, so `--model owner/name` works everywhere (speech.hub.resolve_model).

    python -m training.push_to_hub checkpoints/ds2-ko owner/ds2-ko [--private] [--token hf_...] \
        [--revision main] [--commit-message "..."]

The folder is checked first: it must load as a release of this project (no pickles) and carry a
model card. Only release files are uploaded (speech.hub.ALLOW_PATTERNS): training logs and
resumable checkpoints that sit next to a release stay at home. HF_ENDPOINT and HF_TOKEN are honoured.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from speech.bundle import CheckpointError, load_bundle
from speech.hub import ALLOW_PATTERNS, is_repo_id

CARD_NAME = "README.md"


def release_files(folder) -> list[str]:
    """The files of `folder` that would be uploaded, after checking that it is a complete release."""
    from huggingface_hub.utils import filter_repo_objects

    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder")
    bundle = load_bundle(folder)  # raises CheckpointError on a broken or foreign folder
    if not (folder / CARD_NAME).is_file():
        raise ValueError(f"{folder} has no model card ({CARD_NAME}); write one (data, licence "
                         f"{bundle.info.get('license', '?')}, metrics, intended use) before publishing")
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    return list(filter_repo_objects(files, allow_patterns=ALLOW_PATTERNS, ignore_patterns=[".*", "*/.*"]))


def push(folder, repo_id: str, private: bool = False, token: Optional[str] = None, revision: Optional[str] = None,
         commit_message: Optional[str] = None):
    from huggingface_hub import HfApi

    if not is_repo_id(repo_id) or "@" in repo_id:
        raise ValueError(f"{repo_id!r} is not a Hub repo id (owner/name)")
    files = release_files(folder)
    api = HfApi(token=token)
    url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model", revision=revision,
                             allow_patterns=files, commit_message=commit_message or f"Upload {Path(folder).name}")
    return url, info, files


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", help="release folder (model.safetensors + config.json + README.md)")
    p.add_argument("repo_id", help="owner/name on the Hub")
    p.add_argument("--private", action="store_true", help="create the repo as private")
    p.add_argument("--token", default=None, help="write token (default: HF_TOKEN or the saved login)")
    p.add_argument("--revision", default=None, help="branch to commit to (default main)")
    p.add_argument("--commit-message", default=None)
    args = p.parse_args(argv)
    try:
        url, info, files = push(args.folder, args.repo_id, args.private, args.token, args.revision, args.commit_message)
    except (ValueError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # HfHubHTTPError (refused, no such namespace) and network errors
        print(f"error: the Hub did not accept the upload: {e}", file=sys.stderr)
        return 1
    print(f"uploaded {', '.join(files)} to {url} (commit {info.oid})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
