"""Where the team's shared data lives: photos and models that other people made.

None of it is part of this repository. Each folder is found, in order, at

- the path in its environment variable (``MLUPDATED_PETS``, ``MLUPDATED_PETS_BREEDS``,
  ``MLUPDATED_ZOO``), if that is set;
- ``../shared/<name>`` beside the repository root.

The build script, the tests and the benchmarks all ask here, so the rule is written once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_ROOT = REPO_ROOT.parent / "shared"


@dataclass(frozen=True)
class SharedFolder:
    """One shared data folder: its name under ``../shared`` and its override variable."""

    name: str
    variable: str
    what: str

    def path(self) -> Path:
        """Where the folder is (or would be): the variable if set, else ``../shared/<name>``."""
        override = os.environ.get(self.variable)
        return Path(override).expanduser() if override else SHARED_ROOT / self.name

    def find(self) -> Path | None:
        """The folder if it exists, else None."""
        path = self.path()
        return path if path.is_dir() else None

    def missing_reason(self) -> str:
        """One line saying what is missing and how to provide it."""
        return (
            f"{self.what} not found at {self.path()}: put the team's shared/{self.name} folder "
            f"beside the repository, or set {self.variable} to its path"
        )


PETS = SharedFolder("pets", "MLUPDATED_PETS", "pet photos (Oxford-IIIT Pet, fit/ and eval/)")
PETS_BREEDS = SharedFolder(
    "pets-breeds", "MLUPDATED_PETS_BREEDS", "single-breed photo series (Oxford-IIIT Pet)"
)
ZOO = SharedFolder("zoo", "MLUPDATED_ZOO", "real-world .mlmodel files")
