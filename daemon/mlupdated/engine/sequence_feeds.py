"""A classic network's inputs fed as sequences, for the ``Predictor``.

``coreml.sequences`` turns Core ML's ``[Seq, 1, C, H, W]`` (or ``[Seq, 1, C]``) array
into one example's ``[Seq, *declared]``; a batch of them is ``[N, Seq, *declared]``,
one axis more than the graph compiled for the declared shape takes. Such a batch
needs a graph compiled for that sequence length (``compile_network(sequences=...)``):
one per set of lengths, kept by :class:`SequenceSessions`. The outputs come back as
Core ML writes a sequence blob, ``[Seq, 1, C, H, W]`` per example.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..coreml.sequences import sequence_inputs
from ..errors import MlupdatedError

# The rank of an engine blob that carries a real sequence: [N, Seq, C, H, W].
SEQUENCE_RANK = 5

Lengths = tuple[tuple[str, int], ...]
# Sessions kept at once: a file of examples of many lengths rebuilds the oldest instead of
# holding a session (its weights and its arena) for every length it has seen.
KEPT_SESSIONS = 8


def sequence_lengths(declared: Mapping[str, tuple[int, ...]], feeds: Mapping[str, Any]) -> Lengths:
    """``(name, Seq)`` of each feed that is a batch of sequences ``[N, Seq, *declared]``
    of an input in ``declared`` (see ``coreml.sequences.sequence_inputs``)."""
    found = []
    for name, shape in declared.items():
        value = feeds.get(name)
        if not isinstance(value, np.ndarray) or value.ndim != len(shape) + 2:
            continue
        if tuple(value.shape[2:]) == tuple(shape):
            found.append((name, int(value.shape[1])))
    return tuple(sorted(found))


def with_batch_axis(results: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each ``[N, Seq, C, H, W]`` result as ``[N, Seq, 1, C, H, W]``: per example Core
    ML's ``[Seq, Batch, C, H, W]`` blob with its batch of one."""
    return {
        name: value[:, :, None] if value.ndim == SEQUENCE_RANK else value
        for name, value in results.items()
    }


class SequenceSessions:
    """Sessions of one classic network compiled for sequence inputs, one per set of
    sequence lengths, built on first use by ``load(sequences)``; the ``KEPT_SESSIONS``
    most recently used are kept."""

    def __init__(self, spec: Any, load: Callable[[dict[str, int]], Any]) -> None:
        self.declared = sequence_inputs(spec)
        self._load = load
        self._sessions: dict[Lengths, Any] = {}

    def session_for(self, feeds: Mapping[str, Any]) -> Any | None:
        """The session for the sequence inputs among ``feeds``; None when there are
        none (the declared-shape session runs them)."""
        if not self.declared:
            return None
        lengths = sequence_lengths(self.declared, feeds)
        if not lengths:
            return None
        if lengths in self._sessions:
            self._sessions[lengths] = self._sessions.pop(lengths)  # the newest used
        else:
            if len(self._sessions) >= KEPT_SESSIONS:
                self._sessions.pop(next(iter(self._sessions)))  # the least recently used
            try:
                self._sessions[lengths] = self._load(dict(lengths))
            except MlupdatedError as exc:
                # A layer that cannot take a sequence: say which input made one.
                fed = ", ".join(f"'{name}' as a sequence of {n}" for name, n in lengths)
                exc.reason = f"with {fed}: {exc.reason}"
                exc.args = (exc.reason,)
                raise
        return self._sessions[lengths]


__all__ = ["SequenceSessions", "sequence_lengths", "with_batch_axis"]
