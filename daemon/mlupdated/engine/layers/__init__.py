"""Layer converters: importing each module fills the registry (see ``engine.registry``)."""

from __future__ import annotations

from . import (  # noqa: F401
    activation,
    arithmetic,
    batchnorm,
    clip,
    concat,
    constant,
    convolution,
    crop,
    dynamic,
    embedding,
    gather_scatter,
    inner_product,
    l2normalize,
    logical,
    lrn,
    matmul,
    normalize,
    padding,
    pooling,
    recurrent,
    reduce,
    reshape,
    scale_bias,
    slice_split,
    softmax,
    unary,
    upsample,
    volume,
)
