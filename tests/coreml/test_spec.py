"""Loading, saving and reading Core ML specs: every kind of bad file, round trips."""

from __future__ import annotations

import os

import numpy as np
import pytest
from helpers.updatable_specs import build_updatable_spec
from mlupdated.coreml import spec as specmod
from mlupdated.coreml.proto import Model_pb2
from mlupdated.errors import ModelNotFoundError, ModelParseError, UnsupportedModelError


@pytest.fixture(scope="module")
def seed_spec() -> Model_pb2.Model:
    return build_updatable_spec()


@pytest.fixture
def model_file(tmp_path, seed_spec):
    path = tmp_path / "model.mlmodel"
    specmod.save_spec(seed_spec, path)
    return path


def knn_spec(labels=("a", "b", "a")) -> Model_pb2.Model:
    from coremltools.models.nearest_neighbors import KNearestNeighborsClassifierBuilder

    builder = KNearestNeighborsClassifierBuilder(
        input_name="features",
        output_name="label",
        number_of_dimensions=4,
        default_class_label=labels[0],
    )
    builder.add_samples(np.random.default_rng(0).random((len(labels), 4)), list(labels))
    spec = Model_pb2.Model()
    spec.CopyFrom(builder.spec)
    return spec


def pipeline_of(*stages: Model_pb2.Model, kind: str = "pipelineClassifier") -> Model_pb2.Model:
    spec = Model_pb2.Model()
    spec.specificationVersion = 4
    spec.description.CopyFrom(stages[-1].description)
    pipe = spec.pipeline if kind == "pipeline" else getattr(spec, kind).pipeline
    for stage in stages:
        pipe.models.add().CopyFrom(stage)
    return spec


# --- bad files ----------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(ModelNotFoundError, match="no such file") as info:
        specmod.load_spec(tmp_path / "nope.mlmodel")
    assert info.value.path == str(tmp_path / "nope.mlmodel")


def test_directory(tmp_path):
    with pytest.raises(ModelNotFoundError, match="directory"):
        specmod.load_spec(tmp_path)


def test_mlpackage_directory(tmp_path):
    package = tmp_path / "model.mlpackage"
    package.mkdir()
    (package / "Manifest.json").write_text("{}")
    with pytest.raises(UnsupportedModelError, match="mlpackage"):
        specmod.load_spec(package)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_fifo_is_never_opened(tmp_path):
    fifo = tmp_path / "model.mlmodel"
    os.mkfifo(fifo)
    # Opening a FIFO for reading would block this test forever; it must be refused.
    with pytest.raises(ModelNotFoundError, match="not a regular file"):
        specmod.load_spec(fifo)


def test_unopenable_path(model_file):
    # A path that runs through a regular file: stat fails with ENOTDIR (works as root).
    with pytest.raises(ModelNotFoundError, match="cannot open"):
        specmod.load_spec(model_file / "inner.mlmodel")


def test_empty_file(tmp_path):
    empty = tmp_path / "empty.mlmodel"
    empty.write_bytes(b"")
    with pytest.raises(ModelParseError, match="empty"):
        specmod.load_spec(empty)


def test_truncated_file(tmp_path, seed_spec):
    data = specmod.serialize(seed_spec)
    for cut in (len(data) // 2, len(data) - 1, 7):
        path = tmp_path / f"cut{cut}.mlmodel"
        path.write_bytes(data[:cut])
        with pytest.raises(ModelParseError, match="not a Core ML model"):
            specmod.load_spec(path)


@pytest.mark.parametrize(
    "payload",
    [
        b"hello, this is a text file\n",
        bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8)),
        b"\x00" * 64,
    ],
    ids=["text", "random", "zeros"],
)
def test_garbage(tmp_path, payload):
    path = tmp_path / "garbage.mlmodel"
    path.write_bytes(payload)
    with pytest.raises(ModelParseError):
        specmod.load_spec(path)


def test_file_larger_than_limit_is_refused_without_reading(tmp_path):
    huge = tmp_path / "huge.mlmodel"
    with open(huge, "wb") as handle:  # sparse: no disk space, no reading
        handle.truncate(specmod.MAX_MODEL_BYTES + 1)
    with pytest.raises(ModelParseError, match="2 GiB"):
        specmod.load_spec(huge)


def test_ml_program_refused():
    spec = Model_pb2.Model(specificationVersion=7)
    spec.mlProgram.SetInParent()
    with pytest.raises(UnsupportedModelError, match="ML Program"):
        specmod.load_spec_bytes(specmod.serialize(spec))


def test_unsupported_type_refused():
    spec = Model_pb2.Model(specificationVersion=1)
    spec.nonMaximumSuppression.SetInParent()
    with pytest.raises(UnsupportedModelError, match="nonMaximumSuppression"):
        specmod.load_spec_bytes(specmod.serialize(spec))


@pytest.mark.parametrize("kind", specmod.APPLE_ONLY_KINDS)
def test_apple_only_type_refused_in_one_line(kind):
    spec = Model_pb2.Model(specificationVersion=1)
    getattr(spec, kind).SetInParent()
    with pytest.raises(UnsupportedModelError) as caught:
        specmod.load_spec_bytes(specmod.serialize(spec))
    message = str(caught.value)
    assert "\n" not in message
    assert f"'{kind}' can only be run by Apple's frameworks" in message


def test_classic_types_are_accepted():
    spec = Model_pb2.Model(specificationVersion=1)
    spec.treeEnsembleClassifier.SetInParent()
    assert specmod.load_spec_bytes(specmod.serialize(spec)).WhichOneof("Type") == (
        "treeEnsembleClassifier"
    )


def test_pipeline_with_unsupported_stage_refused(seed_spec):
    other = Model_pb2.Model(specificationVersion=1)
    other.visionFeaturePrint.SetInParent()
    data = specmod.serialize(pipeline_of(other, seed_spec))
    with pytest.raises(UnsupportedModelError, match="stage 0: model type 'visionFeaturePrint'"):
        specmod.load_spec_bytes(data)


@pytest.mark.parametrize("version", range(1, 10))
def test_every_spec_version_coremltools_writes(seed_spec, version):
    spec = Model_pb2.Model()
    spec.CopyFrom(seed_spec)
    spec.specificationVersion = version
    assert specmod.load_spec_bytes(specmod.serialize(spec)).specificationVersion == version


@pytest.mark.parametrize("version", [0, 10, 99])
def test_unknown_spec_versions_refused(seed_spec, version):
    spec = Model_pb2.Model()
    spec.CopyFrom(seed_spec)
    spec.specificationVersion = version
    with pytest.raises(UnsupportedModelError, match="specification version"):
        specmod.load_spec_bytes(specmod.serialize(spec))


# --- round trips and hashes -----------------------------------------------------------


def test_save_load_round_trip_is_byte_identical(tmp_path, model_file, seed_spec):
    loaded = specmod.load_spec(model_file)
    assert loaded == seed_spec
    again = tmp_path / "again.mlmodel"
    specmod.save_spec(loaded, again)
    assert again.read_bytes() == model_file.read_bytes()
    assert model_file.read_bytes() == specmod.serialize(seed_spec)


def test_hashes_agree(model_file, seed_spec):
    assert specmod.spec_sha256(seed_spec) == specmod.file_sha256(model_file)
    changed = Model_pb2.Model()
    changed.CopyFrom(seed_spec)
    changed.description.metadata.author = "someone"
    assert specmod.spec_sha256(changed) != specmod.spec_sha256(seed_spec)


def test_save_leaves_no_temporary_files(tmp_path, seed_spec):
    specmod.save_spec(seed_spec, tmp_path / "m.mlmodel")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.mlmodel"]


# --- accessors ------------------------------------------------------------------------


def test_kind_network_and_labels(seed_spec):
    assert specmod.model_kind(seed_spec) == "neuralNetworkClassifier"
    assert specmod.neural_network(seed_spec) is seed_spec.neuralNetworkClassifier
    assert specmod.pipeline_stages(seed_spec) == []
    assert specmod.class_labels(seed_spec) == ["Cat", "Dog"]


def test_int64_labels():
    spec = build_updatable_spec(classes=(3, 7, 11))
    assert specmod.class_labels(spec) == [3, 7, 11]


def test_regressor_has_no_labels():
    spec = build_updatable_spec(loss="mse")
    assert specmod.model_kind(spec) == "neuralNetwork"
    assert specmod.class_labels(spec) == []


def test_knn_labels_and_pipeline(seed_spec):
    knn = knn_spec()
    assert specmod.class_labels(knn) == ["a", "b", "a"]
    with pytest.raises(UnsupportedModelError):
        specmod.neural_network(knn)
    pipe = pipeline_of(seed_spec, knn)
    loaded = specmod.load_spec_bytes(specmod.serialize(pipe))
    stages = specmod.pipeline_stages(loaded)
    assert [specmod.model_kind(s) for s in stages] == [
        "neuralNetworkClassifier",
        "kNearestNeighborsClassifier",
    ]
    assert specmod.class_labels(loaded) == ["a", "b", "a"]
    with pytest.raises(UnsupportedModelError):
        specmod.neural_network(loaded)


def test_plain_pipeline_stages(seed_spec):
    pipe = pipeline_of(seed_spec, kind="pipeline")
    assert len(specmod.pipeline_stages(pipe)) == 1
    assert specmod.class_labels(pipe) == ["Cat", "Dog"]


def test_updatable_stage(seed_spec):
    assert specmod.updatable_stage(seed_spec) is seed_spec
    knn = knn_spec()
    pipe = pipeline_of(seed_spec, knn)
    assert specmod.updatable_stage(pipe) == knn
    frozen = Model_pb2.Model()
    frozen.CopyFrom(seed_spec)
    frozen.isUpdatable = False
    assert specmod.updatable_stage(pipeline_of(frozen)) is None


def test_compiled_model_directory(tmp_path):
    compiled = tmp_path / "model.mlmodelc"
    compiled.mkdir()
    with pytest.raises(UnsupportedModelError, match="compiled model"):
        specmod.load_spec(compiled)
