"""Core ML's classic model types run through onnxruntime.

Each model (a pipeline stage, or a whole model) becomes its own small ONNX graph. The
operators that carry the model's logic are onnxruntime's ONNX-ML ones (domain
``ai.onnx.ml``): ``TreeEnsembleRegressor`` (double thresholds) for tree ensembles,
``SVMClassifier``/``SVMRegressor`` for support vector machines (libsvm's rules,
Platt probabilities included), ``OneHotEncoder``, ``ArrayFeatureExtractor`` and
``CategoryMapper``. The linear arithmetic (GLM weights, scaler, normalizer, imputer,
feature vectorizer, the probability transforms) is written with standard operators in
double: the ONNX-ML versions of those answer in float32, which loses digits and can
move a value across a tree's threshold in a later stage. A dictionary vectorizer and
the identity model are plain NumPy (onnxruntime's ``DictVectorizer`` takes one map,
not a batch).

Features travel between stages with the batch first: a double or int64 feature is a
``[N]`` array, a string feature a ``[N]`` object array, a multi-array ``[N, *shape]``,
a dictionary a list of N dicts. A graph takes doubles and multi-arrays as double
``[N, D]``, int64 as ``[N, 1]`` and strings as ``[N, 1]``.

Model types that only Apple's frameworks run (Vision's feature prints, the Natural
Language and Sound Analysis models, linked models...) are refused with one line that
names the type (``coreml.spec.apple_only_reason``).

One module per family: ``linear`` (GLM), ``trees``, ``svm``, ``transformers``; ``graph``
holds what their builders share, ``stage`` compiles and runs a model.
"""

from __future__ import annotations

from ...coreml.spec import APPLE_ONLY_KINDS, CLASSIC_KINDS, apple_only_reason
from .stage import ClassicStage, Classified, compile_classic, graph_output

__all__ = [
    "APPLE_ONLY_KINDS",
    "CLASSIC_KINDS",
    "ClassicStage",
    "Classified",
    "apple_only_reason",
    "compile_classic",
    "graph_output",
]
