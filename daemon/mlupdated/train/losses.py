"""Loss ops: categorical cross-entropy and mean squared error, mean over the batch.

Cross-entropy reads the probabilities a ``softmax`` op made; it computes the loss from
that softmax's logits (log-softmax, never ``log`` of a probability that underflowed to
0) and sends ``(p - onehot) / N`` straight to the logits, which is the same gradient
without the 1/p blow-up.
"""

from __future__ import annotations

import numpy as np

from .autodiff import DTYPE, Value, make
from .ops import log_softmax_array

# Floor for log(p) when the probabilities do not come from a softmax op we can see.
_TINY = np.finfo(np.float32).tiny


def cross_entropy(probabilities: Value, targets: np.ndarray) -> Value:
    """Mean of ``-log p[target]`` over the batch; ``targets`` are class indices ``[N]``."""
    n = probabilities.shape[0]
    c = probabilities.shape[1]
    index = np.asarray(targets, dtype=np.int64).reshape(n)
    onehot = np.zeros((n, c), dtype=DTYPE)
    onehot[np.arange(n), index] = 1
    if probabilities.op == "softmax":
        logits = probabilities.parents[0]
        logp = log_softmax_array(logits.data.reshape(n, c), axis=1)
        loss = -(logp * onehot).sum() / n
        p = probabilities.data.reshape(n, c)

        def backward(g: np.ndarray) -> None:
            logits.accumulate(((p - onehot) * (g / n)).reshape(logits.shape))

        parent = logits
    else:
        p = probabilities.data.reshape(n, c)
        loss = -(np.log(np.maximum(p, _TINY)) * onehot).sum() / n

        def backward(g: np.ndarray) -> None:
            grad = -onehot / (np.maximum(p, _TINY) * n) * g
            probabilities.accumulate(grad.reshape(probabilities.shape))

        parent = probabilities
    return make(np.asarray(loss, dtype=DTYPE), [parent], backward, op="crossEntropy")


def mean_squared_error(prediction: Value, target: np.ndarray) -> Value:
    """Mean over every element of ``(prediction - target)²`` (PyTorch's ``MSELoss``)."""
    t = np.asarray(target, dtype=DTYPE).reshape(prediction.shape)
    diff = prediction.data - t
    loss = (diff * diff).mean()

    def backward(g: np.ndarray) -> None:
        prediction.accumulate(diff * (2.0 * g / diff.size))

    return make(np.asarray(loss, dtype=DTYPE), [prediction], backward, op="meanSquaredError")
