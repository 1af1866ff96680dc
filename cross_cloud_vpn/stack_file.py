"""Read a ``Pulumi.<stack>.yaml`` into the config map a Pulumi program receives.

The Pulumi CLI hands a program every config value as a string, objects and lists as JSON.
The tests, the local rehearsal and the benchmark evaluate the program the same way from the
committed stack files, with no CLI on the machine.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml


def _as_config_string(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def read_stack_file(path: Path, encrypted: set[str] | None = None) -> dict[str, str]:
    """The ``config:`` of a stack file as Pulumi passes it to a program.

    Encrypted (``secure:``) values cannot be read without the Pulumi CLI; they raise a
    ``ValueError`` naming the key, so a caller supplies them itself; or, given a set as
    ``encrypted``, their keys are added to it and left out of the result.
    """
    document = yaml.safe_load(path.read_text()) or {}
    config = document.get("config") or {}
    values: dict[str, str] = {}
    for key, value in config.items():
        if isinstance(value, dict) and set(value) == {"secure"}:
            if encrypted is None:
                raise ValueError(f"{path}: '{key}' is encrypted; only the Pulumi CLI can read it")
            encrypted.add(str(key))
            continue
        values[str(key)] = _as_config_string(value)
    return values
