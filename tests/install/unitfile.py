"""A small reader for systemd unit files, enough for the tests to check keys and values.

configparser does not fit: units repeat keys (``Environment=`` twice) and quote values
the systemd way. This keeps every value of a key, in order.
"""

from __future__ import annotations

from pathlib import Path

Unit = dict[str, dict[str, list[str]]]


def parse_unit(text: str) -> Unit:
    """Sections → keys → list of values, comments and blank lines dropped."""
    unit: Unit = {}
    section: dict[str, list[str]] | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = unit.setdefault(line[1:-1], {})
            continue
        if section is None or "=" not in line:
            raise ValueError(f"line {number}: not a key=value inside a section: {raw!r}")
        key, value = line.split("=", 1)
        section.setdefault(key.strip(), []).append(value.strip())
    return unit


def parse_unit_file(path: Path) -> Unit:
    return parse_unit(path.read_text(encoding="utf-8"))


def split_words(value: str) -> list[str]:
    """Split an ExecStart=-style value into words, undoing quotes and escapes.

    Specifiers (``%%``) and ``$$`` are undone too, as systemd does before running it.
    """
    words: list[str] = []
    current: list[str] = []
    quoted = False
    in_word = False
    i = 0
    while i < len(value):
        char = value[i]
        if char == "\\" and i + 1 < len(value):
            current.append(value[i + 1])
            in_word = True
            i += 2
            continue
        if char == '"':
            quoted = not quoted
            in_word = True
        elif char.isspace() and not quoted:
            if in_word:
                words.append("".join(current))
            current, in_word = [], False
        else:
            current.append(char)
            in_word = True
        i += 1
    if in_word:
        words.append("".join(current))
    return [word.replace("%%", "%").replace("$$", "$") for word in words]
