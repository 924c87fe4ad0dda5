"""A Keras-style Sequential CNN written directly with NeuralNetworkBuilder (the form
Keras converters produce: same-padded convolutions, pooling, channel-last flatten,
dense layers, softmax), compared with the same network in PyTorch on real photos."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from mlupdated.coreml.images import load_tensor
from mlupdated.engine.predictor import Predictor
from torch.nn import functional as F

SIZE = 32
LABELS = ["Cat", "Dog", "Other"]
SCALE = 1.0 / 127.5
BIAS = (-1.0, -1.0, -1.0)


def _weights(seed: int) -> dict[str, np.ndarray]:
    r = np.random.default_rng(seed)

    def w(*shape: int, fan_in: int) -> np.ndarray:
        return (r.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)

    return {
        "c1": w(8, 3, 3, 3, fan_in=27),
        "b1": w(8, fan_in=4),
        "c2": w(16, 8, 3, 3, fan_in=72),
        "b2": w(16, fan_in=4),
        "d1": w(32, 16 * 4 * 4, fan_in=256),
        "e1": w(32, fan_in=4),
        "d2": w(3, 32, fan_in=32),
        "e2": w(3, fan_in=4),
    }


def _spec(p: dict[str, np.ndarray]):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("coremltools").setLevel(logging.ERROR)
        from coremltools.models import datatypes
        from coremltools.models.neural_network import NeuralNetworkBuilder

        b = NeuralNetworkBuilder(
            [("image", datatypes.Array(3, SIZE, SIZE))], [("probs", None)], mode="classifier"
        )
        b.set_pre_processing_parameters(
            image_input_names=["image"],
            is_bgr=False,
            image_scale=SCALE,
            red_bias=BIAS[0],
            green_bias=BIAS[1],
            blue_bias=BIAS[2],
        )
        conv = dict(stride_height=1, stride_width=1, border_mode="same", groups=1, has_bias=True)
        b.add_convolution(
            "conv1",
            kernel_channels=3,
            output_channels=8,
            height=3,
            width=3,
            W=p["c1"].transpose(2, 3, 1, 0),
            b=p["b1"],
            input_name="image",
            output_name="c1",
            **conv,
        )
        b.add_activation("relu1", "RELU", "c1", "r1")
        b.add_pooling(
            "pool1", 2, 2, 2, 2, "MAX", padding_type="VALID", input_name="r1", output_name="p1"
        )
        b.add_convolution(
            "conv2",
            kernel_channels=8,
            output_channels=16,
            height=3,
            width=3,
            W=p["c2"].transpose(2, 3, 1, 0),
            b=p["b2"],
            input_name="p1",
            output_name="c2",
            **conv,
        )
        b.add_activation("relu2", "RELU", "c2", "r2")
        b.add_pooling(
            "pool2", 4, 4, 4, 4, "AVERAGE", padding_type="VALID", input_name="r2", output_name="p2"
        )
        b.add_flatten("flatten", 1, "p2", "flat")  # channel-last, as Keras flattens
        b.add_inner_product("dense1", p["d1"], p["e1"], 256, 32, True, "flat", "d1")
        b.add_activation("relu3", "RELU", "d1", "r3")
        b.add_inner_product("dense2", p["d2"], p["e2"], 32, 3, True, "r3", "logits")
        b.add_softmax("softmax", "logits", "probs")
        b.set_class_labels(LABELS, predicted_feature_name="classLabel", prediction_blob="probs")
    return b.spec


def _torch(p: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    t = {k: torch.from_numpy(v) for k, v in p.items()}
    y = torch.from_numpy(x) * SCALE + torch.tensor(BIAS).view(1, 3, 1, 1)
    y = F.max_pool2d(F.relu(F.conv2d(y, t["c1"], t["b1"], padding=1)), 2)
    y = F.avg_pool2d(F.relu(F.conv2d(y, t["c2"], t["b2"], padding=1)), 4)
    y = y.permute(0, 2, 3, 1).reshape(len(x), -1)
    y = F.relu(F.linear(y, t["d1"], t["e1"]))
    return torch.softmax(F.linear(y, t["d2"], t["e2"]), 1).numpy()


def test_builder_sequential_cnn_matches_pytorch(photos: list[Path], tmp_path: Path) -> None:
    params = _weights(7)
    path = tmp_path / "keras_like.mlmodel"
    path.write_bytes(_spec(params).SerializeToString())
    predictor = Predictor.from_path(path)
    results = predictor.predict_paths(photos)
    image_type = predictor.image_feature.type.imageType
    x = np.stack([load_tensor(p, image_type) for p in photos])
    expected = _torch(params, x)
    got = np.array([[r.probabilities[lab] for lab in LABELS] for r in results])
    assert np.max(np.abs(got - expected)) <= 1e-4
    assert [r.label for r in results] == [LABELS[i] for i in expected.argmax(1)]
