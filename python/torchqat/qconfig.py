"""What to quantize and how: ``QuantSpec`` for one tensor, ``QConfig`` for a model.

A ``QConfig`` holds a weight spec and an activation spec, per-layer overrides
(by module name, glob or ``re:`` regex, or by module type) and a skip list.
``prepare_qat`` resolves it for every layer it quantizes.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple, Type, Union

from torch import nn

from ._fake_quant import quant_range

GRANULARITIES = ("per_tensor", "per_channel", "per_group")
ESTIMATORS = ("ste", "lsq", "lsq+")
OBSERVERS = ("minmax", "moving_average", "current", "histogram")
FP8_FORMATS = ("e4m3", "e5m2")


@dataclass(frozen=True)
class QuantSpec:
    """How one tensor (a weight or an activation) is fake-quantized.

    * ``bits`` (2-8), ``signed``, ``symmetric`` (zero point 0) and ``narrow_range``
      (e.g. [-127, 127]) give the integer grid;
    * ``granularity``: ``"per_tensor"``, ``"per_channel"`` (output channels of a
      weight) or ``"per_group"`` (``group_size`` consecutive input elements of a
      weight row share a scale);
    * ``estimator``: ``"ste"`` (qparams from the observer, straight-through
      gradient), ``"lsq"`` (learned scale, zero point 0) or ``"lsq+"`` (learned
      scale and zero point);
    * ``observer``: ``"current"`` (the range of the tensor at hand: weights),
      ``"moving_average"`` (``averaging_constant``), ``"minmax"`` (running) or
      ``"histogram"`` (``histogram_method``: per-tensor activations, for calibration);
    * ``fp8``: ``"e4m3"`` or ``"e5m2"`` instead of an integer grid (amax scaling).
    """

    bits: int = 8
    signed: bool = True
    symmetric: bool = True
    narrow_range: bool = False
    granularity: str = "per_tensor"
    group_size: Optional[int] = None
    estimator: str = "ste"
    observer: str = "moving_average"
    averaging_constant: float = 0.01
    histogram_method: str = "mse"
    fp8: Optional[str] = None

    def __post_init__(self):
        def bad(what):
            raise ValueError(f"QuantSpec: {what} (spec: {self})")

        if self.fp8 is not None:
            if self.fp8 not in FP8_FORMATS:
                bad(f'fp8 must be one of {FP8_FORMATS} or None, got "{self.fp8}"')
            if self.estimator != "ste":
                bad("fp8 specs use the straight-through estimator (estimator='ste')")
        if not isinstance(self.bits, int) or not 2 <= self.bits <= 8:
            bad(f"bits must be an integer in [2, 8], got {self.bits!r}")
        if self.granularity not in GRANULARITIES:
            bad(f'granularity must be one of {GRANULARITIES}, got "{self.granularity}"')
        if (self.granularity == "per_group") != (self.group_size is not None):
            bad("group_size is given exactly when granularity is 'per_group'")
        if self.group_size is not None and (not isinstance(self.group_size, int) or self.group_size < 1):
            bad(f"group_size must be a positive integer, got {self.group_size!r}")
        if self.estimator not in ESTIMATORS:
            bad(f'estimator must be one of {ESTIMATORS}, got "{self.estimator}"')
        if self.observer not in OBSERVERS:
            bad(f'observer must be one of {OBSERVERS}, got "{self.observer}"')
        if self.observer == "histogram" and self.granularity != "per_tensor":
            bad("the histogram observer is per-tensor only")
        if self.estimator == "lsq+" and self.symmetric:
            bad("lsq+ learns a zero point: it needs symmetric=False")
        if not 0.0 < self.averaging_constant <= 1.0:
            bad(f"averaging_constant must be in (0, 1], got {self.averaging_constant}")
        if self.histogram_method not in ("percentile", "mse", "entropy"):
            bad(f'histogram_method must be "percentile", "mse" or "entropy", got "{self.histogram_method}"')
        quant_min, quant_max = self.quant_range
        if self.symmetric and self.signed and quant_max < 1:
            bad("a symmetric signed grid needs at least one positive level")

    @property
    def quant_range(self) -> Tuple[int, int]:
        return quant_range(self.bits, self.signed, self.narrow_range)

    def replace(self, **changes) -> "QuantSpec":
        return dataclasses.replace(self, **changes)

    def describe(self) -> str:
        """A short label such as ``int8 per_channel sym ste``."""
        if self.fp8:
            return f"fp8-{self.fp8} {self.granularity}"
        kind = f"{'int' if self.signed else 'uint'}{self.bits}"
        gran = f"per_group({self.group_size})" if self.granularity == "per_group" else self.granularity
        return f"{kind} {gran} {'sym' if self.symmetric else 'asym'} {self.estimator}"


# Weights: per output channel, symmetric, narrow range (as the x86 and ONNX
# int8 backends want), qparams from the current weights.
INT8_WEIGHT = QuantSpec(bits=8, signed=True, symmetric=True, narrow_range=True, granularity="per_channel",
                        observer="current")
# Activations: per tensor, affine uint8, moving-average range.
UINT8_ACTIVATION = QuantSpec(bits=8, signed=False, symmetric=False, observer="moving_average")

Pattern = Union[str, Type[nn.Module]]
_KEEP = object()  # "leave this spec as it is" in overrides


@dataclass
class _Override:
    pattern: Pattern
    weight: object = _KEEP
    activation: object = _KEEP


@dataclass
class QConfig:
    """A model's quantization: specs for weights and activations (``None``:
    leave in float), per-layer overrides and a skip list.

    ``first_last_bits``: the first and last quantized layers (in execution
    order) get weights and input activations of at least this many bits, as
    the low-bit QAT literature does; ``None`` leaves them as the rest.
    ``freeze_bn_after``: training steps after which Conv-BN layers stop
    updating their BatchNorm statistics (``None``: never on their own; see
    ``torchqat.freeze_bn_stats``).
    """

    weight: Optional[QuantSpec] = INT8_WEIGHT
    activation: Optional[QuantSpec] = UINT8_ACTIVATION
    first_last_bits: Optional[int] = None
    freeze_bn_after: Optional[int] = None
    overrides: List[_Override] = field(default_factory=list)
    skipped: List[Pattern] = field(default_factory=list)

    # ---- presets -----------------------------------------------------------
    @classmethod
    def int8(cls) -> "QConfig":
        """int8 per-channel symmetric weights, uint8 per-tensor activations."""
        return cls()

    @classmethod
    def w4a8(cls, group_size: int = 32) -> "QConfig":
        """int4 weights in groups of ``group_size`` input elements, uint8
        activations; first and last layers at 8 bits, and so are layers whose
        weight rows the groups do not divide (depthwise convs, convs and
        linears over few inputs): ``prepare_qat``'s report lists them."""
        weight = QuantSpec(bits=4, signed=True, symmetric=True, granularity="per_group", group_size=group_size,
                           observer="current")
        return cls(weight=weight, activation=UINT8_ACTIVATION, first_last_bits=8)

    @classmethod
    def w4a4_lsq(cls) -> "QConfig":
        """LSQ: learned per-channel int4 weight scales, LSQ+ learned scale and
        offset for 4-bit activations; first and last layers at 8 bits."""
        weight = QuantSpec(bits=4, signed=True, symmetric=True, granularity="per_channel", estimator="lsq",
                           observer="current")
        activation = QuantSpec(bits=4, signed=False, symmetric=False, estimator="lsq+", observer="minmax")
        return cls(weight=weight, activation=activation, first_last_bits=8)

    @classmethod
    def fp8(cls, fmt: str = "e4m3") -> "QConfig":
        """FP8 weights (per channel) and activations (per tensor), amax scaling."""
        weight = QuantSpec(fp8=fmt, granularity="per_channel", observer="current")
        activation = QuantSpec(fp8=fmt, observer="moving_average")
        return cls(weight=weight, activation=activation)

    # ---- per-layer changes -------------------------------------------------
    def override(self, pattern: Pattern, *, weight=_KEEP, activation=_KEEP) -> "QConfig":
        """Layers matching ``pattern`` (a module name glob such as ``"layer4.*"``,
        ``"re:<regex>"``, or a module type) get these specs; ``None`` keeps that
        tensor in float. Later overrides win. Returns ``self`` for chaining."""
        _check_pattern(pattern)
        if weight is not _KEEP and weight is not None and not isinstance(weight, QuantSpec):
            raise TypeError(f"QConfig.override: weight must be a QuantSpec or None, got {type(weight).__name__}")
        if activation is not _KEEP and activation is not None and not isinstance(activation, QuantSpec):
            raise TypeError(
                f"QConfig.override: activation must be a QuantSpec or None, got {type(activation).__name__}")
        self.overrides.append(_Override(pattern, weight, activation))
        return self

    def skip(self, *patterns: Pattern) -> "QConfig":
        """Leave the layers matching any pattern in float. Returns ``self``."""
        for p in patterns:
            _check_pattern(p)
        self.skipped.extend(patterns)
        return self

    # ---- resolution (used by prepare_qat) ----------------------------------
    def is_skipped(self, name: str, module: nn.Module) -> bool:
        return any(matches(p, name, module) for p in self.skipped)

    def specs_for(self, name: str, module: nn.Module, edge: bool = False
                  ) -> Tuple[Optional[QuantSpec], Optional[QuantSpec]]:
        """(weight spec, activation spec) for one layer; ``edge``: it is the
        first or last quantized layer."""
        weight, activation = self.weight, self.activation
        if edge and self.first_last_bits is not None:
            weight = _at_least_bits(weight, self.first_last_bits)
            activation = _at_least_bits(activation, self.first_last_bits)
        for o in self.overrides:
            if matches(o.pattern, name, module):
                weight = weight if o.weight is _KEEP else o.weight
                activation = activation if o.activation is _KEEP else o.activation
        return weight, activation

    def patterns(self) -> List[Pattern]:
        return [o.pattern for o in self.overrides] + list(self.skipped)


def _at_least_bits(spec: Optional[QuantSpec], bits: int) -> Optional[QuantSpec]:
    if spec is None or spec.fp8 or spec.bits >= bits:
        return spec
    return widened(spec, bits)


def widened(spec: QuantSpec, bits: int) -> QuantSpec:
    """``spec`` with at least ``bits`` bits; per-group becomes per-channel
    (an 8-bit layer wants per-channel weights, not small groups)."""
    gran = "per_channel" if spec.granularity == "per_group" else spec.granularity
    return spec.replace(bits=max(spec.bits, bits), granularity=gran, group_size=None)


def _check_pattern(pattern: Pattern) -> None:
    if isinstance(pattern, type) and issubclass(pattern, nn.Module):
        return
    if not isinstance(pattern, str) or not pattern:
        raise TypeError(f"a layer pattern must be a non-empty str (glob or 're:regex') or an nn.Module type, "
                        f"got {pattern!r}")
    if pattern.startswith("re:"):
        try:
            re.compile(pattern[3:])
        except re.error as e:
            raise ValueError(f"bad regex in layer pattern {pattern!r}: {e}") from None


def matches(pattern: Pattern, name: str, module: Optional[nn.Module]) -> bool:
    """Whether a layer (qualified name, module) matches an override or skip pattern."""
    if isinstance(pattern, type):
        return module is not None and isinstance(module, pattern)
    if pattern.startswith("re:"):
        return re.fullmatch(pattern[3:], name) is not None
    return fnmatch.fnmatchcase(name, pattern)


def unmatched_patterns(qconfig: QConfig, layers: Dict[str, nn.Module]) -> List[Pattern]:
    """The override / skip patterns that match none of ``layers``."""
    return [p for p in qconfig.patterns() if not any(matches(p, n, m) for n, m in layers.items())]
