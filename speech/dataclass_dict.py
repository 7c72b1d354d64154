"""Dataclass configs from their JSON form (`config.json` of a release): the one rule for all of them.
An unknown key is an error that names it (a typo or a newer release must not be silently dropped)."""
from __future__ import annotations

from dataclasses import fields


def dataclass_from_dict(cls, d: dict, what: str, tuples: bool = False):
    """`cls(**d)` after checking every key is a field of `cls`; `tuples` turns JSON lists back into
    the tuples the dataclass holds (so a loaded config equals the one that was saved)."""
    known = {f.name for f in fields(cls)}
    unknown = set(d) - known
    if unknown:
        raise ValueError(f"Unknown {what} {sorted(unknown)}; known: {sorted(known)}")
    if tuples:
        d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
    return cls(**d)
