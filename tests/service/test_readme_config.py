"""The README's configuration table states the defaults the code really has.

Every row whose key names one setting (``section.key``) and whose default is a TOML
value is compared with :class:`~mlupdated.service.config.Config`'s default; a row
saying ``unset`` must be a setting whose default is None. Every setting has a row.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from mlupdated.service.config import Config, tomllib

REPO = Path(__file__).resolve().parents[2]
ROW = re.compile(r"^\| `(?P<keys>[^|]+?)` \| (?P<default>[^|]+?) \|")


def _readme_rows() -> dict[str, str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        match = ROW.match(line)
        if not match:
            continue
        names = [n.strip(" `") for n in match["keys"].split(",")]
        first_section = names[0].split(".")[0]
        for name in names:
            full = name if "." in name else f"{first_section}.{name}"
            rows[full] = match["default"].strip()
    return rows


def _defaults() -> dict[str, Any]:
    config = Config()
    found = {}
    for part in dataclasses.fields(config):
        value = getattr(config, part.name)
        if dataclasses.is_dataclass(value):
            for setting in dataclasses.fields(value):
                found[f"{part.name}.{setting.name}"] = getattr(value, setting.name)
    return found


def _value(cell: str) -> Any:
    if cell == "unset":
        return None
    return tomllib.loads(f"v = {cell.strip('`')}")["v"]


def test_every_setting_has_a_row_with_the_real_default() -> None:
    rows, defaults = _readme_rows(), _defaults()
    assert sorted(rows) == sorted(defaults), "README table and Config differ in keys"
    wrong = {}
    for key, cell in rows.items():
        stated, real = _value(cell), defaults[key]
        if isinstance(real, tuple):
            real = list(real)
        if stated != real:
            wrong[key] = (cell, real)
    assert not wrong, f"README defaults that are not the code's (README, code): {wrong}"
