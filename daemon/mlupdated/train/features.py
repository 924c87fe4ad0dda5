"""Push examples through the frozen prefix once, through the feature cache.

For each example: hash its content, look the features up in the cache, and for the
misses decode the image (or check the array), run the prefix in onnxruntime in small
batches and store the outputs. An example that cannot be read is skipped with its
reason, never fatal.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..coreml.images import as_multiarray, load_tensor
from ..coreml.proto import Model_pb2
from ..engine.graph_cache import load_session
from ..errors import ImageError, UnsupportedModelError
from .cache import FeatureCache, entry_key
from .data import CutValues, Example
from .split import Split

BACKBONE_BATCH = 16
_READ_CHUNK = 1 << 20


@dataclass(frozen=True)
class Skipped:
    """An example left out of the update, and why (one line)."""

    source: str
    reason: str


def model_input(spec: Model_pb2.Model) -> Model_pb2.FeatureDescription:
    """The network's one input feature (an image or a multi-array)."""
    inputs = [
        f
        for f in spec.description.input
        if f.type.WhichOneof("Type") in ("imageType", "multiArrayType")
    ]
    if len(inputs) != 1:
        raise UnsupportedModelError(
            f"an update needs a network with exactly one image or array input ({len(inputs)})"
        )
    return inputs[0]


def _content_hash(example: Example) -> str:
    digest = hashlib.sha256()
    if isinstance(example.source, np.ndarray):
        array = np.ascontiguousarray(example.source, dtype=np.float32)
        digest.update(b"array\0" + repr(array.shape).encode() + b"\0")
        digest.update(array.tobytes())
        return digest.hexdigest()
    try:
        with open(example.source, "rb") as handle:
            for chunk in iter(lambda: handle.read(_READ_CHUNK), b""):
                digest.update(chunk)
    except OSError as exc:
        raise ImageError(f"cannot read: {exc.strerror or exc}", path=example.source) from exc
    return digest.hexdigest()


def _tensor(example: Example, feature: Model_pb2.FeatureDescription, resize: str) -> np.ndarray:
    if feature.type.WhichOneof("Type") == "imageType":
        if isinstance(example.source, np.ndarray):
            array = np.asarray(example.source, dtype=np.float32)
            if array.ndim != 3:
                raise ImageError(f"image array must be (C, H, W), got shape {array.shape}")
            return array
        return load_tensor(example.source, feature.type.imageType, resize=resize)
    if not isinstance(example.source, np.ndarray):
        raise ImageError("the model takes an array, not an image file", path=example.source)
    return as_multiarray(example.source, feature)


def compute_features(
    spec: Model_pb2.Model,
    split: Split,
    examples: Sequence[Example],
    *,
    cache: FeatureCache | None,
    resize: str,
) -> tuple[dict[str, np.ndarray], list[int], list[Skipped]]:
    """Features of ``examples``: the stacked cut blobs, the indices used, the skipped."""
    feature = model_input(spec)
    blobs = split.cut_blobs
    per_example: dict[int, dict[str, np.ndarray]] = {}
    skipped: list[Skipped] = []
    pending: list[tuple[int, str, np.ndarray]] = []
    session = None

    def flush() -> None:
        nonlocal session
        if not pending:
            return
        if session is None:
            session = load_session(split.prefix_spec, outputs=list(blobs))
        batch = np.stack([tensor for _, _, tensor in pending])
        results = session.run({feature.name: batch})
        # The graph may rename an output (an input blob comes out as an identity of
        # itself); its outputs are in the order they were asked for.
        outputs = dict(zip(blobs, (results[n] for n in session.output_names), strict=True))
        for row, (index, key, _) in enumerate(pending):
            features = {name: np.asarray(outputs[name][row], dtype=np.float32) for name in blobs}
            per_example[index] = features
            if cache is not None:
                cache.computed += 1
                cache.put(key, features)
        pending.clear()

    given: dict[int, dict[str, np.ndarray]] = {}
    for index, example in enumerate(examples):
        if isinstance(example.source, CutValues):
            values = example.source.blobs
            if set(values) != set(blobs):
                missing = ", ".join(sorted(set(blobs) - set(values)))
                skipped.append(Skipped(example.describe(), f"no value for {missing}"))
            else:
                given[index] = values
            continue
        try:
            content = _content_hash(example)
            key = entry_key(split.prefix_hash, content, resize)
            hit = cache.get(key, blobs) if cache is not None else None
            if hit is not None:
                per_example[index] = hit
                continue
            pending.append((index, key, _tensor(example, feature, resize)))
        except ImageError as exc:
            skipped.append(Skipped(example.describe(), exc.reason))
            continue
        if len(pending) >= BACKBONE_BATCH:
            flush()
    flush()
    per_example.update(_shaped_like(given, per_example))
    used = sorted(per_example)
    if not used:
        return {name: np.zeros((0,), np.float32) for name in blobs}, [], skipped
    stacked = {name: np.stack([per_example[i][name] for i in used]) for name in blobs}
    return stacked, used, skipped


def _shaped_like(
    given: dict[int, dict[str, np.ndarray]], computed: dict[int, dict[str, np.ndarray]]
) -> dict[int, dict[str, np.ndarray]]:
    """Given cut values in the shape the prefix gives its blobs (a rehearsal row is
    stored flat; the prefix may give ``(C, 1, 1)``)."""
    sample = next(iter(computed.values()), None)
    out = {}
    for index, values in given.items():
        out[index] = {
            name: np.asarray(value, dtype=np.float32).reshape(
                sample[name].shape if sample is not None else np.shape(value)
            )
            for name, value in values.items()
        }
    return out
