"""Command-line flags generated from a config dataclass, so a default is written once (in the
dataclass) and the parser cannot drift from it.

A field becomes `--field-name` with the field's type and default. `flag(...)` adds what a plain
default cannot say: help, choices, a different flag name, a boolean that the flag turns off
(`--no-amp` for `amp=True`), or `preset=True` (the flag defaults to None so a preset can fill it).
Fields whose type is not a plain scalar (nested configs, tuples) are left to the caller.
"""
from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any, Optional


def flag(default: Any, help: Optional[str] = None, choices=None, name: Optional[str] = None,
         preset: bool = False):
    """A dataclass field with flag metadata."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices, "flag": name,
                                                        "preset": preset})


def _scalar(tp) -> Optional[type]:
    """int / float / str / bool, also inside Optional[...]; None for anything else."""
    if tp in (int, float, str, bool):
        return tp
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) is typing.Union and len(args) == 1 and args[0] in (int, float, str):
        return args[0]
    return None


def add_flags(parser: argparse.ArgumentParser, cls, skip=(), prefix: str = "") -> list[str]:
    """Add one flag per scalar field of dataclass `cls` (except `skip`); returns the fields added."""
    hints = typing.get_type_hints(cls)
    added = []
    for f in dataclasses.fields(cls):
        tp = _scalar(hints[f.name])
        if f.name in skip or tp is None:
            continue
        meta = f.metadata
        default = f.default if f.default is not dataclasses.MISSING else None
        name = meta.get("flag") or "--" + prefix + f.name.replace("_", "-")
        kw = {"dest": prefix.replace("-", "_") + f.name, "help": meta.get("help")}
        if tp is bool:
            # `--x` turns on a field that is off by default; a field on by default needs a named off-switch.
            if default:
                if not meta.get("flag"):
                    raise ValueError(f"{cls.__name__}.{f.name} is on by default: give flag(name='--no-...')")
                parser.add_argument(name, action="store_false", **kw)
            else:
                parser.add_argument(name, action="store_true", **kw)
        else:
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            parser.add_argument(name, type=tp, required=required, choices=meta.get("choices"),
                                default=None if meta.get("preset") or required else default, **kw)
        added.append(f.name)
    return added
