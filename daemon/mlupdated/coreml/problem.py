"""One broken rule of an updatable model (shared by the validator's modules)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One broken rule: its id, a one-line message starting with it, the layer if any."""

    rule: str
    message: str
    layer: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        """A JSON-friendly form: ``{"rule", "layer", "message"}``."""
        return {"rule": self.rule, "layer": self.layer, "message": self.message}


def make_problem(rule: str, text: str, layer: str | None = None) -> Problem:
    """A ``Problem`` whose message starts with its rule id."""
    return Problem(rule, f"{rule}: {text}", layer)
