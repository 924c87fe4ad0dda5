"""Read and write Core ML model specs (``.mlmodel`` protobuf files).

Loading is the boundary where file-system and protobuf failures become our errors:
a missing or non-regular file is ``ModelNotFoundError``, bytes that do not parse are
``ModelParseError``, and a valid model of a kind we do not run (an ML Program, a type
only Apple's frameworks run, an ``.mlpackage`` directory) is ``UnsupportedModelError``.
Everything that returns a spec returns the ``Model_pb2.Model`` message itself, so callers use the
protobuf API directly.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from google.protobuf.message import DecodeError

from ..errors import (
    InvalidModelError,
    ModelNotFoundError,
    ModelParseError,
    UnsupportedModelError,
)
from ..fsutil import atomic_write_bytes
from .proto import Model_pb2, NeuralNetwork_pb2

# A protobuf message cannot be larger than 2 GiB; a bigger file is not a model.
MAX_MODEL_BYTES = 2 * 1024**3

# Spec versions coremltools writes (iOS 11 .. iOS 18); newer ones are refused
# because fields we do not know could change the meaning of the model.
MIN_SPEC_VERSION = 1
MAX_SPEC_VERSION = 9

NEURAL_NETWORK_KINDS = ("neuralNetwork", "neuralNetworkClassifier", "neuralNetworkRegressor")
PIPELINE_KINDS = ("pipeline", "pipelineClassifier", "pipelineRegressor")
KNN_KIND = "kNearestNeighborsClassifier"
# Run through onnxruntime's ONNX-ML operators (engine/classic.py).
CLASSIFIER_KINDS = ("glmClassifier", "treeEnsembleClassifier", "supportVectorClassifier")
REGRESSOR_KINDS = ("glmRegressor", "treeEnsembleRegressor", "supportVectorRegressor")
TRANSFORMER_KINDS = (
    "normalizer",
    "oneHotEncoder",
    "imputer",
    "scaler",
    "featureVectorizer",
    "arrayFeatureExtractor",
    "categoricalMapping",
    "dictVectorizer",
    "identity",
)
CLASSIC_KINDS = CLASSIFIER_KINDS + REGRESSOR_KINDS + TRANSFORMER_KINDS
SUPPORTED_KINDS = NEURAL_NETWORK_KINDS + PIPELINE_KINDS + (KNN_KIND,) + CLASSIC_KINDS

# Types whose work is done by Apple's own frameworks (Vision, Natural Language, Sound
# Analysis, Create ML) or by code inside the app: nothing outside Apple can run them.
APPLE_ONLY_KINDS = (
    "visionFeaturePrint",
    "audioFeaturePrint",
    "soundAnalysisPreprocessing",
    "textClassifier",
    "wordTagger",
    "gazetteer",
    "wordEmbedding",
    "itemSimilarityRecommender",
    "linkedModel",
    "customModel",
    "serializedModel",
    "classConfidenceThresholding",
)


def apple_only_reason(kind: str | None) -> str | None:
    """The one-line reason a model type runs only on Apple's frameworks, else None."""
    if kind not in APPLE_ONLY_KINDS:
        return None
    return (
        f"model type '{kind}' can only be run by Apple's frameworks (Core ML on an Apple "
        "device); mlupdated cannot run it"
    )


_READ_CHUNK = 1 << 20

NeuralNetworkLike = (
    NeuralNetwork_pb2.NeuralNetwork
    | NeuralNetwork_pb2.NeuralNetworkClassifier
    | NeuralNetwork_pb2.NeuralNetworkRegressor
)


def load_spec(path: str | os.PathLike[str]) -> Model_pb2.Model:
    """Read, parse and check a ``.mlmodel`` file; return its spec.

    Raises ``ModelNotFoundError`` (missing, unreadable, not a regular file),
    ``ModelParseError`` (empty, truncated, not a Core ML protobuf, too large) or
    ``UnsupportedModelError`` (an ``.mlpackage``, an ML Program, or a model type we
    do not run).
    """
    p = Path(path)
    return load_spec_bytes(_read_model_file(p), path=p)


def load_spec_and_digest(path: str | os.PathLike[str]) -> tuple[Model_pb2.Model, str]:
    """:func:`load_spec`, and the hex SHA-256 of the bytes it parsed: a name for the
    spec as it is in the file that costs a fraction of serializing it again (the
    engine's graph cache keys compiled graphs by it)."""
    p = Path(path)
    data = _read_model_file(p)
    return load_spec_bytes(data, path=p), hashlib.sha256(data).hexdigest()


def _read_model_file(p: Path) -> bytes:
    """The bytes of the model file at ``p``, after the checks of :func:`load_spec`."""
    try:
        st = os.stat(p)
    except FileNotFoundError as exc:
        raise ModelNotFoundError("no such file", path=p) from exc
    except OSError as exc:
        raise ModelNotFoundError(f"cannot open: {exc.strerror or exc}", path=p) from exc
    if stat.S_ISDIR(st.st_mode):
        if p.suffix.lower() == ".mlpackage" or (p / "Manifest.json").exists():
            raise UnsupportedModelError(
                "is an .mlpackage (ML Program); only .mlmodel neural networks are supported",
                path=p,
            )
        if p.suffix.lower() == ".mlmodelc":
            raise UnsupportedModelError(
                "is a compiled model (.mlmodelc); give the .mlmodel it was compiled from",
                path=p,
            )
        raise ModelNotFoundError("is a directory, not a model file", path=p)
    if not stat.S_ISREG(st.st_mode):
        # Opening a FIFO or a device could block forever or read endless data.
        raise ModelNotFoundError("not a regular file", path=p)
    if st.st_size > MAX_MODEL_BYTES:
        raise ModelParseError(
            f"file is {st.st_size} bytes, larger than the 2 GiB a Core ML model can be",
            path=p,
        )
    return _read_regular_file(p)


def _read_regular_file(p: Path) -> bytes:
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(p, flags)
    except FileNotFoundError as exc:
        raise ModelNotFoundError("no such file", path=p) from exc
    except OSError as exc:
        raise ModelNotFoundError(f"cannot open: {exc.strerror or exc}", path=p) from exc
    try:
        # The path could have been swapped for something else since the stat.
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ModelNotFoundError("not a regular file", path=p)
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = os.read(fd, _READ_CHUNK)
            if not chunk:
                break
            total += len(chunk)
            if total > MAX_MODEL_BYTES:
                raise ModelParseError(
                    "file is larger than the 2 GiB a Core ML model can be", path=p
                )
            chunks.append(chunk)
    except OSError as exc:
        raise ModelNotFoundError(f"cannot read: {exc.strerror or exc}", path=p) from exc
    finally:
        os.close(fd)
    return b"".join(chunks)


def load_spec_bytes(data: bytes, *, path: str | os.PathLike[str] | None = None) -> Model_pb2.Model:
    """Parse and check a serialized spec (see :func:`load_spec` for the errors)."""
    if not data:
        raise ModelParseError("empty file, not a Core ML model", path=path)
    if len(data) > MAX_MODEL_BYTES:
        raise ModelParseError("larger than the 2 GiB a Core ML model can be", path=path)
    spec = Model_pb2.Model()
    try:
        spec.ParseFromString(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise ModelParseError(
            f"not a Core ML model (protobuf parse failed: {exc})".replace("\n", " "), path=path
        ) from exc
    _check_parsed(spec, path=path)
    return spec


def _check_parsed(spec: Model_pb2.Model, *, path: str | os.PathLike[str] | None) -> None:
    version = spec.specificationVersion
    kind = spec.WhichOneof("Type")
    # Random bytes often parse as a protobuf with unknown fields only; a real model
    # always has a version and a type.
    if version == 0 and kind is None:
        raise ModelParseError("not a Core ML model (no specification version or type)", path=path)
    if kind is None:
        raise ModelParseError("not a Core ML model (no model type)", path=path)
    if not MIN_SPEC_VERSION <= version <= MAX_SPEC_VERSION:
        raise UnsupportedModelError(
            f"specification version {version} is not supported "
            f"(supported: {MIN_SPEC_VERSION}..{MAX_SPEC_VERSION})",
            path=path,
        )
    _check_kind(spec, path=path, where="")


def _check_kind(spec: Model_pb2.Model, *, path: str | os.PathLike[str] | None, where: str) -> None:
    kind = spec.WhichOneof("Type")
    if kind == "mlProgram":
        raise UnsupportedModelError(
            f"{where}is an ML Program; only neural-network models (convert with "
            "convert_to='neuralnetwork') are supported",
            path=path,
        )
    apple_only = apple_only_reason(kind)
    if apple_only is not None:
        raise UnsupportedModelError(f"{where}{apple_only}", path=path)
    if kind not in SUPPORTED_KINDS:
        raise UnsupportedModelError(
            f"{where}model type '{kind}' is not supported "
            f"(supported: {', '.join(SUPPORTED_KINDS)})",
            path=path,
        )
    for index, stage in enumerate(pipeline_stages(spec)):
        _check_kind(stage, path=path, where=f"{where}pipeline stage {index}: ")


def save_spec(spec: Model_pb2.Model, path: str | os.PathLike[str]) -> Path:
    """Write ``spec`` to ``path`` atomically, serialized deterministically."""
    return atomic_write_bytes(path, serialize(spec))


def serialize(spec: Model_pb2.Model) -> bytes:
    """The deterministic serialization of ``spec`` (same message → same bytes)."""
    return spec.SerializeToString(deterministic=True)


def spec_sha256(spec: Model_pb2.Model) -> str:
    """Hex SHA-256 of the deterministic serialization of ``spec``."""
    return hashlib.sha256(serialize(spec)).hexdigest()


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes (``ModelNotFoundError`` if it cannot be read)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(_READ_CHUNK), b""):
                digest.update(chunk)
    except OSError as exc:
        raise ModelNotFoundError(f"cannot read: {exc.strerror or exc}", path=path) from exc
    return digest.hexdigest()


def model_kind(spec: Model_pb2.Model) -> str:
    """The name of the spec's ``Type`` oneof (``"neuralNetworkClassifier"``, ...)."""
    kind = spec.WhichOneof("Type")
    if kind is None:
        raise InvalidModelError("model has no type")
    return kind


def neural_network(spec: Model_pb2.Model) -> NeuralNetworkLike:
    """The NeuralNetwork / Classifier / Regressor message of a plain neural-network model.

    Raises ``UnsupportedModelError`` for any other kind (use :func:`pipeline_stages`
    for pipelines).
    """
    kind = spec.WhichOneof("Type")
    if kind not in NEURAL_NETWORK_KINDS:
        raise UnsupportedModelError(f"model of type '{kind}' is not a plain neural network")
    return getattr(spec, kind)


def pipeline_stages(spec: Model_pb2.Model) -> list[Model_pb2.Model]:
    """The stages of a pipeline model in order; empty for every other kind."""
    kind = spec.WhichOneof("Type")
    if kind not in PIPELINE_KINDS:
        return []
    message = getattr(spec, kind)
    # "pipeline" holds the models itself; the classifier/regressor wrap a Pipeline.
    pipeline = message if kind == "pipeline" else message.pipeline
    return list(pipeline.models)


def class_labels(spec: Model_pb2.Model) -> list[str | int]:
    """The class labels of a classifier, as stored (strings or int64); empty otherwise.

    For a pipeline, the labels of its last stage that has some.
    """
    kind = spec.WhichOneof("Type")
    if kind == "neuralNetworkClassifier":
        return _labels_of(spec.neuralNetworkClassifier)
    if kind == KNN_KIND:
        return _labels_of(spec.kNearestNeighborsClassifier)
    for stage in reversed(pipeline_stages(spec)):
        labels = class_labels(stage)
        if labels:
            return labels
    return []


def _labels_of(message: object) -> list[str | int]:
    which = message.WhichOneof("ClassLabels")  # type: ignore[attr-defined]
    if which == "stringClassLabels":
        return list(message.stringClassLabels.vector)  # type: ignore[attr-defined]
    if which == "int64ClassLabels":
        return [int(v) for v in message.int64ClassLabels.vector]  # type: ignore[attr-defined]
    return []


def updatable_stage(spec: Model_pb2.Model) -> Model_pb2.Model | None:
    """The model that an update task trains: ``spec`` itself, or a pipeline's stage.

    For a pipeline this is its last stage marked ``isUpdatable`` (Core ML allows only
    the last one to be), searched recursively; ``None`` when no stage is marked. For
    any other kind it is ``spec`` whether or not it is marked updatable.
    """
    if spec.WhichOneof("Type") not in PIPELINE_KINDS:
        return spec
    for stage in reversed(pipeline_stages(spec)):
        if stage.isUpdatable:
            inner = updatable_stage(stage)
            return inner if inner is not None else stage
    return None
