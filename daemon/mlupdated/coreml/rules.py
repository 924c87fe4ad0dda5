"""Core ML's rules for updatable networks that the validator and the trainer share.

One owner for each: ``coreml.validate_network`` refuses a model that breaks them,
``train/`` builds its trainable suffix from them, and the daemon's gate reads them.
"""

from __future__ import annotations

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
