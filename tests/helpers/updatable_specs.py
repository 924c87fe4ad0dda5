"""Small updatable Core ML specs for tests, built with coremltools' NeuralNetworkBuilder.

The default is the seed model's shape, scaled down: an image input ``image``, a
frozen convolution prefix (``conv_1`` → ``relu_1`` → ``pool_1``), ``flatten``, then
the updatable head ``dense_5`` (innerProduct) → ``relu_5`` → ``dense_6``
(innerProduct) → ``softmax`` (output ``output``), a categorical cross-entropy loss
``lossLayer`` on ``output`` with the class label as its training target, and SGD.
It is a ``neuralNetworkClassifier`` with outputs ``classLabel`` and ``output``.

Keyword options change one thing each:

- ``input_shape`` (C, H, W) and ``image_input`` (an image input, 1 channel →
  GRAYSCALE, 3 → RGB; else a multi-array input of that shape);
- ``conv_prefix`` (off: the input is flattened straight into ``dense_5``),
  ``conv_channels``, ``updatable_conv`` (``conv_1`` is updatable too);
- ``hidden`` (``dense_5`` outputs), ``classes`` (labels, strings or ints);
- ``loss``: ``"cross_entropy"`` (classifier) or ``"mse"`` (a plain network whose
  ``output`` is the softmax, target ``output_true`` a multi-array);
- ``optimizer``: ``"sgd"`` or ``"adam"`` with ``learning_rate``/``lr_range``,
  ``batch_size``/``batch_sizes``, ``momentum``/``momentum_range`` (SGD),
  ``beta1``/``beta2``/``eps`` and their ranges (Adam);
- ``epochs``/``epoch_set``, ``shuffle``, ``seed`` (the spec's shuffle seed);
- ``weight_seed``: NumPy seed of the random initial weights.

Every call returns a fresh ``Model_pb2.Model`` (coremltools' own protobuf class, which
is the one ``mlupdated.coreml.proto`` exports). Tests mutate it to break one rule.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

import numpy as np
from mlupdated.coreml.proto import Model_pb2


def build_updatable_spec(
    *,
    input_shape: tuple[int, int, int] = (3, 8, 8),
    image_input: bool = True,
    conv_prefix: bool = True,
    conv_channels: int = 4,
    updatable_conv: bool = False,
    hidden: int = 8,
    classes: Sequence[str | int] = ("Cat", "Dog"),
    loss: str = "cross_entropy",
    optimizer: str = "sgd",
    learning_rate: float = 0.01,
    lr_range: tuple[float, float] = (0.0, 1.0),
    batch_size: int = 4,
    batch_sizes: Sequence[int] = (2, 4, 8),
    momentum: float = 0.0,
    momentum_range: tuple[float, float] = (0.0, 1.0),
    beta1: float = 0.9,
    beta1_range: tuple[float, float] = (0.0, 1.0),
    beta2: float = 0.999,
    beta2_range: tuple[float, float] = (0.0, 1.0),
    eps: float = 1e-8,
    eps_range: tuple[float, float] = (0.0, 1.0),
    epochs: int = 3,
    epoch_set: Sequence[int] | None = (1, 2, 3, 5, 10),
    shuffle: bool = False,
    seed: int | None = None,
    weight_seed: int = 0,
) -> Model_pb2.Model:
    """Build an updatable spec (see the module docstring for the options)."""
    import coremltools as ct  # noqa: F401  (registers the proto classes quietly first)
    from coremltools.models import datatypes
    from coremltools.models.neural_network import NeuralNetworkBuilder
    from coremltools.models.neural_network.update_optimizer_utils import AdamParams, SgdParams

    rng = np.random.default_rng(weight_seed)
    channels, height, width = input_shape
    n_classes = len(classes)
    classifier = loss == "cross_entropy"
    builder = NeuralNetworkBuilder(
        [("image", datatypes.Array(channels, height, width))],
        [("output", datatypes.Array(n_classes))],
        mode="classifier" if classifier else None,
        disable_rank5_shape_mapping=False,
    )
    features = "image"
    if conv_prefix:
        builder.add_convolution(
            "conv_1",
            kernel_channels=channels,
            output_channels=conv_channels,
            height=3,
            width=3,
            stride_height=1,
            stride_width=1,
            border_mode="same",
            groups=1,
            W=rng.normal(0, 0.3, (3, 3, channels, conv_channels)).astype(np.float32),
            b=rng.normal(0, 0.1, conv_channels).astype(np.float32),
            has_bias=True,
            input_name="image",
            output_name="conv_1_out",
        )
        builder.add_activation("relu_1", "RELU", "conv_1_out", "relu_1_out")
        builder.add_pooling(
            "pool_1", 2, 2, 2, 2, "MAX", "VALID", input_name="relu_1_out", output_name="pool_1_out"
        )
        features = "pool_1_out"
        flat = conv_channels * (height // 2) * (width // 2)
    else:
        flat = channels * height * width
    builder.add_flatten("flatten", 0, features, "flatten_out")
    builder.add_inner_product(
        "dense_5",
        W=rng.normal(0, 1.0 / np.sqrt(flat), (hidden, flat)).astype(np.float32),
        b=rng.normal(0, 0.1, hidden).astype(np.float32),
        input_channels=flat,
        output_channels=hidden,
        has_bias=True,
        input_name="flatten_out",
        output_name="dense_5_out",
    )
    builder.add_activation("relu_5", "RELU", "dense_5_out", "relu_5_out")
    builder.add_inner_product(
        "dense_6",
        W=rng.normal(0, 1.0 / np.sqrt(hidden), (n_classes, hidden)).astype(np.float32),
        b=rng.normal(0, 0.1, n_classes).astype(np.float32),
        input_channels=hidden,
        output_channels=n_classes,
        has_bias=True,
        input_name="relu_5_out",
        output_name="dense_6_out",
    )
    builder.add_softmax("softmax", "dense_6_out", "output")
    if classifier:
        builder.set_class_labels(
            list(classes), predicted_feature_name="classLabel", prediction_blob="output"
        )
    if image_input:
        builder.set_pre_processing_parameters(image_input_names=["image"], image_scale=1.0 / 255.0)

    trainables = ["dense_5", "dense_6"] + (["conv_1"] if conv_prefix and updatable_conv else [])
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet):
        builder.make_updatable(trainables)
        if classifier:
            builder.set_categorical_cross_entropy_loss(name="lossLayer", input="output")
        elif loss == "mse":
            builder.set_mean_squared_error_loss(
                name="lossLayer", input_feature=("output", datatypes.Array(n_classes))
            )
        else:
            raise ValueError(f"unknown loss {loss!r}")
        if optimizer == "sgd":
            params = SgdParams(lr=learning_rate, batch=batch_size, momentum=momentum)
            params.set_lr(learning_rate, *lr_range)
            params.set_batch(batch_size, list(batch_sizes))
            params.set_momentum(momentum, *momentum_range)
            builder.set_sgd_optimizer(params)
        elif optimizer == "adam":
            params = AdamParams(
                lr=learning_rate, batch=batch_size, beta1=beta1, beta2=beta2, eps=eps
            )
            params.set_lr(learning_rate, *lr_range)
            params.set_batch(batch_size, list(batch_sizes))
            params.set_beta1(beta1, *beta1_range)
            params.set_beta2(beta2, *beta2_range)
            params.set_eps(eps, *eps_range)
            builder.set_adam_optimizer(params)
        else:
            raise ValueError(f"unknown optimizer {optimizer!r}")
        builder.set_epochs(epochs, list(epoch_set) if epoch_set is not None else None)
    spec = builder.spec
    nn = spec.neuralNetworkClassifier if classifier else spec.neuralNetwork
    nn.updateParams.shuffle.defaultValue = shuffle
    if seed is not None:
        nn.updateParams.seed.defaultValue = seed
    result = Model_pb2.Model()
    result.CopyFrom(spec)
    return result


def layer_by_name(spec: Model_pb2.Model, name: str):
    """The layer called ``name`` of a plain neural-network spec (for tests to mutate)."""
    kind = spec.WhichOneof("Type")
    for layer in getattr(spec, kind).layers:
        if layer.name == name:
            return layer
    raise KeyError(name)
