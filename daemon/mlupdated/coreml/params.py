"""The training parameters an updatable model carries, and checks of overrides.

An updatable neural network stores, in ``updateParams``, its optimizer (SGD or Adam)
with learning rate, mini-batch size and momentum / beta1 / beta2 / eps, plus epochs,
shuffle and seed. Each numeric parameter has a default value and may restrict what a
caller can choose instead: a closed range (``range.minValue .. range.maxValue``) or a
set (``set.values``). Overrides from the command line or the daemon's config must lie
inside them, as Core ML's ``MLModelConfiguration.parameters`` requires.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ParameterError
from .proto import Model_pb2
from .spec import NEURAL_NETWORK_KINDS, updatable_stage

Number = int | float | bool

PARAMETER_NAMES = (
    "epochs",
    "learning_rate",
    "mini_batch_size",
    "momentum",
    "beta1",
    "beta2",
    "eps",
    "shuffle",
    "seed",
)
INT_PARAMETERS = frozenset({"epochs", "mini_batch_size", "seed"})
BOOL_PARAMETERS = frozenset({"shuffle"})
SGD_ONLY = frozenset({"momentum"})
ADAM_ONLY = frozenset({"beta1", "beta2", "eps"})

# The words used in messages ("learning rate 5.0 outside ...").
LABELS = {
    "epochs": "epochs",
    "learning_rate": "learning rate",
    "mini_batch_size": "mini-batch size",
    "momentum": "momentum",
    "beta1": "beta1",
    "beta2": "beta2",
    "eps": "eps",
    "shuffle": "shuffle",
    "seed": "seed",
}

# The name a person gives each parameter as an override (an option of ``mlupdated
# update``, a key of the daemon's ``config.update``): its own name, but for the
# mini-batch size, which is ``batch_size``.
OVERRIDE_NAMES = {
    name: "batch_size" if name == "mini_batch_size" else name for name in PARAMETER_NAMES
}

# Values used when the spec leaves a parameter out; these are Core ML's and PyTorch's
# defaults for the optimizer hyper-parameters. Epochs, learning rate and mini-batch
# size have none: a spec without them is refused by the validator.
FALLBACKS: dict[str, Number] = {
    "momentum": 0.0,
    "beta1": 0.9,
    "beta2": 0.999,
    "eps": 1e-8,
    "shuffle": True,
    "seed": 0,
}

# Bounds that hold whatever the spec says (a spec range cannot widen them).
_SANE: dict[str, tuple[float, float | None, str]] = {
    "epochs": (1, None, "at least 1"),
    "mini_batch_size": (1, None, "at least 1"),
    "learning_rate": (0.0, None, "not negative"),
    "momentum": (0.0, None, "not negative"),
    "beta1": (0.0, 1.0, "between 0 and 1"),
    "beta2": (0.0, 1.0, "between 0 and 1"),
    "eps": (0.0, None, "not negative"),
    "seed": (0, None, "not negative"),
}


@dataclass(frozen=True)
class Allowed:
    """What a parameter may be set to: a closed range, a set, or anything."""

    minimum: float | None = None
    maximum: float | None = None
    values: tuple[int, ...] | None = None

    @property
    def kind(self) -> str:
        """``"range"``, ``"set"`` or ``"any"``."""
        if self.values is not None:
            return "set"
        if self.minimum is not None or self.maximum is not None:
            return "range"
        return "any"

    def contains(self, value: Number) -> bool:
        """Whether ``value`` is allowed."""
        if self.values is not None:
            return value in self.values
        if self.minimum is not None and value < self.minimum:
            return False
        if self.maximum is not None and value > self.maximum:
            return False
        return True

    def describe(self) -> str:
        """``"range [0.0, 1.0]"``, ``"set {8, 16, 32}"`` or ``"any value"``."""
        if self.values is not None:
            return "set {" + ", ".join(str(v) for v in self.values) + "}"
        if self.kind == "range":
            return f"range [{self.minimum}, {self.maximum}]"
        return "any value"

    def as_dict(self) -> dict[str, object]:
        """A JSON-friendly form."""
        if self.values is not None:
            return {"set": list(self.values)}
        if self.kind == "range":
            return {"min": self.minimum, "max": self.maximum}
        return {}


@dataclass(frozen=True)
class Parameter:
    """One training parameter: its value by default, what it may be, and whether the
    spec states it (``present`` false means ``default`` is our fallback, or ``None``)."""

    name: str
    default: Number | None
    allowed: Allowed = field(default_factory=Allowed)
    present: bool = False


@dataclass(frozen=True)
class UpdateParameters:
    """The update parameters of a model (see the module docstring).

    ``optimizer`` is ``"sgd"``, ``"adam"`` or ``None`` (no optimizer in the spec).
    Parameters that do not belong to the optimizer (momentum for Adam, betas for SGD)
    are still present with ``present=False`` and their fallback default.
    """

    optimizer: str | None
    epochs: Parameter
    learning_rate: Parameter
    mini_batch_size: Parameter
    momentum: Parameter
    beta1: Parameter
    beta2: Parameter
    eps: Parameter
    shuffle: Parameter
    seed: Parameter

    def get(self, name: str) -> Parameter:
        """The parameter called ``name`` (one of ``PARAMETER_NAMES``)."""
        if name not in PARAMETER_NAMES:
            raise ParameterError(f"unknown training parameter '{name}'", parameter=name)
        return getattr(self, name)

    def applies(self, name: str) -> bool:
        """Whether ``name`` means something for this model's optimizer."""
        if name in SGD_ONLY:
            return self.optimizer == "sgd"
        if name in ADAM_ONLY:
            return self.optimizer == "adam"
        return True

    def defaults(self) -> dict[str, Number | None]:
        """Every parameter's default value, by name."""
        return {name: self.get(name).default for name in PARAMETER_NAMES}

    def resolve(self, overrides: dict[str, Number | None] | None = None) -> dict[str, Number]:
        """Defaults with the non-``None`` ``overrides`` applied, each checked.

        Raises ``ParameterError`` for an override outside the allowed values, or for a
        parameter the spec needs but does not state (epochs, learning rate, batch size).
        """
        values: dict[str, Number] = {}
        for name in PARAMETER_NAMES:
            override = (overrides or {}).get(name)
            if override is not None:
                values[name] = check_override(name, override, self)
                continue
            default = self.get(name).default
            if default is None:
                raise ParameterError(
                    f"the model states no {LABELS[name]} and none was given", parameter=name
                )
            values[name] = default
        return values


def update_parameters(spec: Model_pb2.Model) -> UpdateParameters:
    """Read the update parameters of ``spec`` (of its updatable stage, for a pipeline).

    A model that is not a neural network (or has no ``updateParams``) gives parameters
    with no optimizer, nothing present, and only the fallback defaults.
    """
    stage = updatable_stage(spec)
    kind = stage.WhichOneof("Type") if stage is not None else None
    if kind not in NEURAL_NETWORK_KINDS:
        return _from_update_params(None)
    nn = getattr(stage, kind)
    return _from_update_params(nn.updateParams if nn.HasField("updateParams") else None)


def _from_update_params(up: object | None) -> UpdateParameters:
    optimizer = None
    opt = None
    if up is not None and up.HasField("optimizer"):  # type: ignore[attr-defined]
        which = up.optimizer.WhichOneof("OptimizerType")  # type: ignore[attr-defined]
        if which == "sgdOptimizer":
            optimizer, opt = "sgd", up.optimizer.sgdOptimizer  # type: ignore[attr-defined]
        elif which == "adamOptimizer":
            optimizer, opt = "adam", up.optimizer.adamOptimizer  # type: ignore[attr-defined]

    def read(name: str, owner: object | None, field_name: str) -> Parameter:
        if owner is None or not owner.HasField(field_name):  # type: ignore[attr-defined]
            return Parameter(name, FALLBACKS.get(name))
        return _parameter(name, getattr(owner, field_name))

    return UpdateParameters(
        optimizer=optimizer,
        epochs=read("epochs", up, "epochs"),
        learning_rate=read("learning_rate", opt, "learningRate"),
        mini_batch_size=read("mini_batch_size", opt, "miniBatchSize"),
        momentum=read("momentum", opt if optimizer == "sgd" else None, "momentum"),
        beta1=read("beta1", opt if optimizer == "adam" else None, "beta1"),
        beta2=read("beta2", opt if optimizer == "adam" else None, "beta2"),
        eps=read("eps", opt if optimizer == "adam" else None, "eps"),
        shuffle=read("shuffle", up, "shuffle"),
        seed=read("seed", up, "seed"),
    )


def _parameter(name: str, message: object) -> Parameter:
    if name in BOOL_PARAMETERS:
        return Parameter(name, bool(message.defaultValue), Allowed(), present=True)  # type: ignore[attr-defined]
    which = message.WhichOneof("AllowedValues")  # type: ignore[attr-defined]
    if which == "range":
        rng = message.range  # type: ignore[attr-defined]
        allowed = Allowed(minimum=rng.minValue, maximum=rng.maxValue)
    elif which == "set":
        allowed = Allowed(values=tuple(int(v) for v in message.set.values))  # type: ignore[attr-defined]
    else:
        allowed = Allowed()
    default = message.defaultValue  # type: ignore[attr-defined]
    default = int(default) if name in INT_PARAMETERS else float(default)
    return Parameter(name, default, allowed, present=True)


def check_override(name: str, value: Number, params: UpdateParameters) -> Number:
    """Check an override of parameter ``name`` and return it with the right type.

    Raises ``ParameterError(parameter=name)`` when ``value`` has the wrong type, lies
    outside the model's allowed range or set, or does not apply to its optimizer.
    """
    label = LABELS.get(name)
    if label is None:
        raise ParameterError(
            f"unknown training parameter '{name}' (known: {', '.join(PARAMETER_NAMES)})",
            parameter=name,
        )
    if not params.applies(name):
        raise ParameterError(
            f"{label} does not apply to the model's {params.optimizer or 'missing'} optimizer",
            parameter=name,
        )
    typed = _coerce(name, label, value)
    if name in BOOL_PARAMETERS:
        return typed
    low, high, words = _SANE.get(name, (None, None, ""))
    if (low is not None and typed < low) or (high is not None and typed > high):
        raise ParameterError(f"{label} {typed} must be {words}", parameter=name)
    allowed = params.get(name).allowed
    if not allowed.contains(typed):
        kind = "outside" if allowed.kind == "range" else "not in"
        raise ParameterError(
            f"{label} {typed} {kind} the model's allowed {allowed.describe()}", parameter=name
        )
    return typed


def _coerce(name: str, label: str, value: Number) -> Number:
    if name in BOOL_PARAMETERS:
        if not isinstance(value, bool):
            raise ParameterError(f"{label} must be true or false, not {value!r}", parameter=name)
        return value
    if isinstance(value, bool):
        raise ParameterError(f"{label} must be a number, not {value!r}", parameter=name)
    if name in INT_PARAMETERS:
        if isinstance(value, float) and not value.is_integer():
            raise ParameterError(f"{label} must be a whole number, not {value}", parameter=name)
        try:
            return int(value)
        except (TypeError, ValueError) as exc:
            raise ParameterError(
                f"{label} must be a whole number, not {value!r}", parameter=name
            ) from exc
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"{label} must be a number, not {value!r}", parameter=name) from exc
    if number != number or number in (float("inf"), float("-inf")):
        raise ParameterError(f"{label} must be a finite number, not {value}", parameter=name)
    return number
