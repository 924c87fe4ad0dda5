"""k-nearest-neighbours updates: append examples (new labels too), alone or in a pipeline."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from mlupdated.coreml.images import load_tensor
from mlupdated.coreml.proto import Model_pb2
from mlupdated.coreml.spec import class_labels, pipeline_stages
from mlupdated.errors import ParameterError
from mlupdated.train.cache import FeatureCache
from mlupdated.train.data import Example, examples_from_folder
from mlupdated.train.task import run_update
from PIL import Image

SIDE = 8


def knn_spec(dims: int, input_name: str = "features") -> Model_pb2.Model:
    with contextlib.redirect_stdout(io.StringIO()):
        from coremltools.models.nearest_neighbors import KNearestNeighborsClassifierBuilder

        builder = KNearestNeighborsClassifierBuilder(
            input_name=input_name,
            output_name="label",
            number_of_dimensions=dims,
            default_class_label="Cat",
            k=1,
        )
    builder.add_samples(np.eye(dims)[:2].tolist(), ["Cat", "Dog"])
    spec = Model_pb2.Model()
    spec.CopyFrom(builder.spec)
    return spec


def pipeline_spec() -> Model_pb2.Model:
    """[image → global average pool → 3 features] then a kNN over those features."""
    from coremltools.models import datatypes
    from coremltools.models.neural_network import NeuralNetworkBuilder

    builder = NeuralNetworkBuilder(
        [("image", datatypes.Array(3, SIDE, SIDE))], [("features", datatypes.Array(3))]
    )
    builder.add_pooling(
        "gap",
        1,
        1,
        1,
        1,
        "AVERAGE",
        "VALID",
        input_name="image",
        output_name="gap_out",
        is_global=True,
    )
    builder.add_flatten("flatten", 0, "gap_out", "features")
    builder.set_pre_processing_parameters(image_input_names=["image"], image_scale=1 / 255)
    extractor = Model_pb2.Model()
    extractor.CopyFrom(builder.spec)
    extractor.specificationVersion = 4
    knn = knn_spec(3)
    spec = Model_pb2.Model()
    spec.specificationVersion = 4
    spec.isUpdatable = True
    spec.description.input.extend(extractor.description.input)
    spec.description.output.extend(knn.description.output)
    spec.description.predictedFeatureName = knn.description.predictedFeatureName
    spec.description.predictedProbabilitiesName = knn.description.predictedProbabilitiesName
    spec.description.trainingInput.extend(extractor.description.input)
    spec.description.trainingInput.extend(
        [f for f in knn.description.trainingInput if f.name == "label"]
    )
    spec.pipelineClassifier.pipeline.models.extend([extractor, knn])
    return spec


def test_standalone_knn_appends_vectors_and_new_labels():
    spec = knn_spec(4)
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((3, 4)).astype(np.float32)
    examples = [Example(v, label) for v, label in zip(vectors, ["Dog", "Bird", "Cat"], strict=True)]
    seen = []
    result = run_update(spec, examples, progress=seen.append)
    index = result.spec.kNearestNeighborsClassifier.nearestNeighborsIndex
    assert len(index.floatSamples) == 5
    np.testing.assert_array_equal([list(s.vector) for s in index.floatSamples[2:]], vectors)
    assert class_labels(result.spec) == ["Cat", "Dog", "Dog", "Bird", "Cat"]
    assert result.spec.isUpdatable
    assert [e.event for e in seen] == ["trainingBegin", "epochEnd"]
    # The input spec is untouched.
    assert len(spec.kNearestNeighborsClassifier.nearestNeighborsIndex.floatSamples) == 2


def test_standalone_knn_skips_vectors_of_the_wrong_size():
    spec = knn_spec(4)
    examples = [Example(np.zeros(4, np.float32), "Cat"), Example(np.zeros(5, np.float32), "Dog")]
    result = run_update(spec, examples)
    assert result.examples_used == 1
    assert "5 values" in result.examples_skipped[0].reason


def test_knn_refuses_training_overrides():
    with pytest.raises(ParameterError, match="does not apply"):
        run_update(knn_spec(4), [Example(np.zeros(4, np.float32), "Cat")], overrides={"epochs": 3})


def test_pipeline_knn_learns_image_features_once(tmp_path):
    spec = pipeline_spec()
    data = tmp_path / "data"
    rng = np.random.default_rng(1)
    for label in ("Cat", "Bird"):
        (data / label).mkdir(parents=True)
        for i in range(2):
            pixels = rng.integers(0, 256, (SIDE + i, SIDE, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(data / label / f"{i}.png")
    examples = examples_from_folder(data, ["Cat", "Dog"], allow_new_labels=True)
    cache = FeatureCache(tmp_path / "cache")
    result = run_update(spec, examples, cache=cache)
    assert cache.computed == 4
    image_type = spec.description.input[0].type.imageType
    expected = [load_tensor(e.source, image_type).mean(axis=(1, 2)) / 255 for e in examples]
    knn = pipeline_stages(result.spec)[1].kNearestNeighborsClassifier
    got = [list(s.vector) for s in knn.nearestNeighborsIndex.floatSamples[2:]]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert class_labels(result.spec)[2:] == ["Bird", "Bird", "Cat", "Cat"]
    again_cache = FeatureCache(tmp_path / "cache")
    again = run_update(result.spec, examples, cache=again_cache)
    assert again_cache.computed == 0
    assert (
        len(
            pipeline_stages(again.spec)[
                1
            ].kNearestNeighborsClassifier.nearestNeighborsIndex.floatSamples
        )
        == 10
    )
