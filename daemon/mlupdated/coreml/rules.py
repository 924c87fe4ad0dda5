"""Core ML's rules for updatable networks that the validator and the trainer share.

One owner for each: ``coreml.validate_network`` refuses a model that breaks them,
``train/`` builds its trainable suffix from them, and the daemon's gate reads them.
"""

from __future__ import annotations

from typing import Any

# Layer types whose weights (and bias) may be marked updatable.
UPDATABLE_LAYER_TYPES = ("convolution", "innerProduct")

# Layer types Core ML can backpropagate through, between the loss and an updatable
# layer (in the order the trainer names them in its refusals).
BACKPROP_LAYER_TYPES = (
    "convolution",
    "innerProduct",
    "pooling",
    "flatten",
    "batchnorm",
    "activation",
    "softmax",
)

# Activations and pooling kinds allowed on that path.
BACKPROP_ACTIVATIONS = ("ReLU", "sigmoid", "tanh")
BACKPROP_POOLING = ("MAX", "AVERAGE")

# Loss layer types (``LossLayerType``) Core ML trains with, and the trainer's name for
# each loss.
CROSS_ENTROPY_LOSS = "categoricalCrossEntropyLossLayer"
LOSS_KINDS = {
    CROSS_ENTROPY_LOSS: "crossEntropy",
    "meanSquaredErrorLossLayer": "meanSquaredError",
}
# The layer type a categorical cross-entropy loss must take its input from.
CROSS_ENTROPY_INPUT_LAYER = "softmax"


def loss_io(loss: Any) -> tuple[str | None, str, str]:
    """(loss layer type, input blob, target) of one ``lossLayers`` entry (``None, "",
    ""`` when it sets no type)."""
    which = loss.WhichOneof("LossLayerType")
    if which is None:
        return None, "", ""
    body = getattr(loss, which)
    return which, body.input, body.target
