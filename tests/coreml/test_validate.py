"""Core ML's rules for updatable models: one failing spec per rule, and passing shapes."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.updatable_specs import build_updatable_spec, layer_by_name
from mlupdated.coreml.proto import Model_pb2
from mlupdated.coreml.validate import check_updatable, validate_updatable
from mlupdated.errors import NotUpdatableError


def nn_of(spec: Model_pb2.Model):
    return getattr(spec, spec.WhichOneof("Type"))


def knn_spec() -> Model_pb2.Model:
    from coremltools.models.nearest_neighbors import KNearestNeighborsClassifierBuilder

    builder = KNearestNeighborsClassifierBuilder(
        input_name="features", output_name="label", number_of_dimensions=4, default_class_label="a"
    )
    builder.add_samples(np.random.default_rng(0).random((3, 4)), ["a", "b", "a"])
    spec = Model_pb2.Model()
    spec.CopyFrom(builder.spec)
    return spec


def pipeline(*stages: Model_pb2.Model) -> Model_pb2.Model:
    spec = Model_pb2.Model(specificationVersion=4, isUpdatable=True)
    spec.description.CopyFrom(stages[-1].description)
    for stage in stages:
        spec.pipelineClassifier.pipeline.models.add().CopyFrom(stage)
    return spec


def frozen_extractor() -> Model_pb2.Model:
    spec = build_updatable_spec(loss="mse")
    spec.isUpdatable = False
    return spec


# --- passing shapes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"optimizer": "adam"},
        {"updatable_conv": True},
        {"conv_prefix": False},
        {"loss": "mse"},
        {"classes": (0, 1, 2)},
        {"image_input": False, "input_shape": (1, 6, 6)},
    ],
    ids=["seed", "adam", "conv", "no-conv", "mse", "int-labels", "multiarray"],
)
def test_valid_shapes_pass(options):
    spec = build_updatable_spec(**options)
    assert validate_updatable(spec) == []
    check_updatable(spec)


def test_seed_model_shape_passes():
    spec = build_updatable_spec(input_shape=(3, 16, 16), hidden=16)
    assert [layer.name for layer in nn_of(spec).layers if layer.isUpdatable] == [
        "dense_5",
        "dense_6",
    ]
    assert validate_updatable(spec) == []


def test_knn_and_pipeline_pass():
    assert validate_updatable(knn_spec()) == []
    assert validate_updatable(pipeline(frozen_extractor(), knn_spec())) == []


# --- one failing spec per rule ----------------------------------------------------------


def _set_version(spec):
    spec.specificationVersion = 3


def _not_updatable(spec):
    spec.isUpdatable = False


def _no_updatable_layer(spec):
    for layer in nn_of(spec).layers:
        layer.isUpdatable = False


def _relu_updatable(spec):
    layer_by_name(spec, "relu_5").isUpdatable = True


def _bias_frozen(spec):
    layer_by_name(spec, "dense_5").innerProduct.bias.isUpdatable = False


def _weights_half(spec):
    weights = layer_by_name(spec, "dense_6").innerProduct.weights
    values = np.asarray(weights.floatValue, np.float32)
    weights.ClearField("floatValue")
    weights.float16Value = values.astype("<f2").tobytes()


def _frozen_conv_half(spec):
    weights = layer_by_name(spec, "conv_1").convolution.weights
    values = np.asarray(weights.floatValue, np.float32)
    weights.ClearField("floatValue")
    weights.float16Value = values.astype("<f2").tobytes()


def _duplicate_name(spec):
    layer_by_name(spec, "relu_1").name = "conv_1"


def _two_losses(spec):
    extra = nn_of(spec).updateParams.lossLayers.add()
    extra.CopyFrom(nn_of(spec).updateParams.lossLayers[0])
    extra.name = "lossLayer2"


def _loss_on_logits(spec):
    nn_of(spec).updateParams.lossLayers[0].categoricalCrossEntropyLossLayer.input = "dense_6_out"


def _target_from_layer(spec):
    nn_of(spec).updateParams.lossLayers[0].categoricalCrossEntropyLossLayer.target = "dense_5_out"


def _target_not_training_input(spec):
    del spec.description.trainingInput[-1]


def _dropout_between(spec):
    layer = layer_by_name(spec, "relu_5")
    layer.name = "drop"
    layer.unary.type = layer.unary.Operation.Value("ABS")


def _linear_between(spec):
    layer_by_name(spec, "relu_5").activation.linear.alpha = 1.0


def _no_optimizer(spec):
    nn_of(spec).updateParams.ClearField("optimizer")


def _no_epochs(spec):
    nn_of(spec).updateParams.ClearField("epochs")


def _batch_not_in_set(spec):
    nn_of(spec).updateParams.optimizer.sgdOptimizer.miniBatchSize.defaultValue = 3


def _lr_outside(spec):
    nn_of(spec).updateParams.optimizer.sgdOptimizer.learningRate.defaultValue = 2.0


CASES = [
    ("spec-version", _set_version, {}, None),
    ("is-updatable", _not_updatable, {}, None),
    ("has-updatable-layer", _no_updatable_layer, {}, None),
    ("updatable-layer-type", _relu_updatable, {}, "relu_5"),
    ("weights-and-bias-updatable", _bias_frozen, {}, "dense_5"),
    ("updatable-weights-float32", _weights_half, {}, "dense_6"),
    ("no-float16-weights", _frozen_conv_half, {}, "conv_1"),
    ("unique-layer-names", _duplicate_name, {}, "conv_1"),
    ("one-loss-layer", _two_losses, {}, None),
    ("loss-input-softmax", _loss_on_logits, {}, "lossLayer"),
    ("loss-target-is-input", _target_from_layer, {}, "lossLayer"),
    ("loss-target-is-input", _target_not_training_input, {"loss": "mse"}, "lossLayer"),
    ("backprop-path", _dropout_between, {}, "drop"),
    ("backprop-path", _linear_between, {}, "relu_5"),
    ("optimizer", _no_optimizer, {}, None),
    ("epochs", _no_epochs, {}, None),
    ("mini-batch-size", _batch_not_in_set, {}, None),
    ("learning-rate", _lr_outside, {}, None),
]


@pytest.mark.parametrize(
    ("rule", "breaker", "options", "layer"),
    CASES,
    ids=[f"{rule}-{breaker.__name__.strip('_')}" for rule, breaker, _, _ in CASES],
)
def test_each_rule(rule, breaker, options, layer):
    spec = build_updatable_spec(**options)
    breaker(spec)
    problems = validate_updatable(spec)
    assert problems, "the broken spec passed"
    first = problems[0]
    assert first.rule == rule, problems
    assert first.message.startswith(f"{rule}: ")
    assert first.layer == layer
    if layer is not None:
        assert f"'{layer}'" in first.message
    with pytest.raises(NotUpdatableError) as info:
        check_updatable(spec, path="model.mlmodel")
    assert info.value.rule == rule and info.value.layer == layer
    assert str(info.value).startswith(f"model.mlmodel: not updatable: {rule}: ")


def test_backprop_message_names_everything():
    spec = build_updatable_spec()
    _dropout_between(spec)
    message = validate_updatable(spec)[0].message
    assert message.startswith(
        "backprop-path: layer 'drop' of type 'unary' lies between loss 'lossLayer' and "
        "updatable layer 'dense_5'; Core ML allows only "
    )


def test_updatable_layer_off_the_loss_path():
    spec = build_updatable_spec()
    nn = nn_of(spec)
    side = nn.layers.add()
    side.CopyFrom(layer_by_name(spec, "dense_6"))
    side.name, side.output[0] = "side", "side_out"
    problems = validate_updatable(spec)
    assert [(p.rule, p.layer) for p in problems] == [("backprop-path", "side")]
    assert "does not feed loss 'lossLayer'" in problems[0].message


def test_every_problem_is_listed():
    spec = build_updatable_spec()
    _set_version(spec)
    _bias_frozen(spec)
    _no_optimizer(spec)
    rules = [p.rule for p in validate_updatable(spec)]
    assert rules == ["spec-version", "weights-and-bias-updatable", "optimizer"]


def test_pipeline_rules():
    bad_order = pipeline(build_updatable_spec(), frozen_extractor())
    assert validate_updatable(bad_order)[0].rule == "pipeline-stage"
    none_marked = pipeline(frozen_extractor())
    assert validate_updatable(none_marked)[0].rule == "is-updatable"
    broken_stage = build_updatable_spec()
    _lr_outside(broken_stage)
    assert [p.rule for p in validate_updatable(pipeline(frozen_extractor(), broken_stage))] == [
        "learning-rate"
    ]


def test_knn_rules():
    spec = knn_spec()
    del spec.description.trainingInput[-1]
    problem = validate_updatable(spec)[0]
    assert problem.rule == "knn-training-input" and "'label'" in problem.message
    spec = knn_spec()
    spec.kNearestNeighborsClassifier.stringClassLabels.vector.append("extra")
    assert validate_updatable(spec)[0].rule == "knn-index"


def test_other_kinds_cannot_be_updated():
    spec = Model_pb2.Model(specificationVersion=4, isUpdatable=True)
    spec.glmClassifier.SetInParent()
    assert [p.rule for p in validate_updatable(spec)] == ["updatable-kind"]
