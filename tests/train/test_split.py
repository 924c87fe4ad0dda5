"""Cutting a network into the frozen prefix and the trainable suffix."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.updatable_specs import build_updatable_spec, layer_by_name
from mlupdated.coreml.spec import neural_network
from mlupdated.engine.graph_cache import load_session
from mlupdated.errors import NotUpdatableError
from mlupdated.train.split import split_network
from specs import with_middle_conv


def names(spec, indices):
    layers = neural_network(spec).layers
    return [layers[i].name for i in indices]


def test_seed_shape_cuts_before_the_dense_head():
    spec = build_updatable_spec()
    split = split_network(spec)
    assert names(spec, split.prefix) == ["conv_1", "relu_1", "pool_1", "flatten"]
    assert names(spec, split.suffix) == ["dense_5", "relu_5", "dense_6", "softmax"]
    assert split.cut_blobs == ("flatten_out",)
    assert [layer.name for layer in split.prefix_spec.neuralNetwork.layers] == names(
        spec, split.prefix
    )


def test_updatable_first_convolution_cuts_at_the_input():
    spec = build_updatable_spec(updatable_conv=True)
    split = split_network(spec)
    assert split.prefix == ()
    assert split.cut_blobs == ("image",)
    assert names(spec, split.suffix)[0] == "conv_1"


def test_updatable_convolution_in_the_middle():
    spec = with_middle_conv()
    split = split_network(spec)
    assert names(spec, split.prefix) == ["conv_1", "relu_1"]
    assert names(spec, split.suffix)[:3] == ["conv_2", "pool_1", "flatten"]
    assert split.cut_blobs == ("relu_1_out",)
    # The prefix spec runs on its own and yields the cut blob.
    session = load_session(split.prefix_spec, outputs=list(split.cut_blobs), cache=False)
    out = session.run({"image": np.zeros((2, 3, 8, 8), np.float32)})
    assert next(iter(out.values())).shape == (2, 2, 8, 8)


def test_frozen_layer_after_the_updatable_one_in_list_order_stays_frozen():
    spec = build_updatable_spec()
    nn = neural_network(spec)
    # Move "flatten" (frozen) after "dense_5" in list order is impossible (dense_5 reads
    # it), so add an unrelated frozen layer after the head: it is neither part.
    extra = nn.layers.add()
    extra.CopyFrom(layer_by_name(spec, "relu_1"))
    extra.name = "side_relu"
    extra.output[0] = "side_out"
    split = split_network(spec)
    assert "side_relu" not in names(spec, split.suffix)
    assert "side_relu" not in names(spec, split.prefix)


def test_prefix_hash_ignores_trained_weights_but_not_frozen_ones():
    spec = build_updatable_spec()
    base = split_network(spec).prefix_hash
    layer_by_name(spec, "dense_5").innerProduct.weights.floatValue[0] += 1
    assert split_network(spec).prefix_hash == base
    layer_by_name(spec, "conv_1").convolution.weights.floatValue[0] += 1
    assert split_network(spec).prefix_hash != base


def test_no_updatable_layer_is_refused():
    spec = build_updatable_spec()
    for layer in neural_network(spec).layers:
        layer.isUpdatable = False
    with pytest.raises(NotUpdatableError):
        split_network(spec)
