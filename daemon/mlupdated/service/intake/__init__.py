"""Intake: from a file dropped into ``corrections/`` or ``inbox/`` to a queued
correction or an inbox prediction.

``watch`` hands watchdog's events over as :mod:`.events` records; ``Arrivals`` (with
the ``StabilityWait`` of ``stability``, which it owns) decides when a file is complete
and what it means. The wait is composed of ``waiting`` (one record per file and its
due time), ``checks`` (one look at a file, and what a read means), ``reading`` (the
reader threads that decode and hash), ``refusals`` and ``closes``. ``Arrivals`` also
owns the model's ``Labels`` (``labels``: folders matched to labels, what a drop did) and
the ``Sources`` (``sources``: walking the folders, the mount-flap rule);
``filters`` holds the rules about names and images; ``inbox`` classifies inbox photos;
``Intake`` runs the threads (observer, worker, supervisor).
"""

from __future__ import annotations

from .arrivals import Arrivals
from .events import IntakeEvent
from .inbox import InboxClassifier
from .intake import Intake
from .sources import TOPS
from .stability import StabilityWait

__all__ = ["TOPS", "Arrivals", "InboxClassifier", "Intake", "IntakeEvent", "StabilityWait"]
