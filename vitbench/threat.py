"""Threat models: the norm and radius of an attack, and parsing eps as the user writes it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from vitbench.errors import ConfigError
from vitbench.limits import MAX_INPUT_SIZE, MAX_L2_EPS, MAX_LINF_EPS

Norm = Literal["linf", "l2"]
NORMS: tuple[str, ...] = ("linf", "l2")


def parse_norm(text: str) -> Norm:
    """Parse 'linf'/'Linf'/'l2'/'L2' into the canonical lower-case name."""
    norm = str(text).strip().lower()
    if norm not in NORMS:
        raise ConfigError(f"norm {text!r} is not supported: use one of {', '.join(NORMS)}")
    return norm  # type: ignore[return-value]


def parse_eps(text: str | float | int) -> float:
    """Parse an eps written as a float ('0.03137'), a fraction ('4/255') or a number.

    Raises:
        ConfigError: when the text is not a non-negative finite number or fraction.
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        raw = str(text).strip()
        try:
            if "/" in raw:
                num, den = raw.split("/")
                value = float(num) / float(den)
            else:
                value = float(raw)
        except (ValueError, ZeroDivisionError):
            raise ConfigError(f"eps {text!r} does not parse: "
                              "write a float such as 0.1 or a fraction such as 4/255") from None
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"eps {text!r} must be a finite number >= 0 (e.g. 4/255 or 0.5)")
    if value > MAX_L2_EPS:
        raise ConfigError(f"eps {text!r} is larger than any distance between two images in [0, 1] (L-inf at most "
                          f"1, L2 at most {MAX_L2_EPS:.0f} at {MAX_INPUT_SIZE} px): write it as e.g. 4/255 or 0.5")
    return value


def check_eps(norm: str, eps: float) -> float:
    """Refuse an eps that is meaningless for its norm on [0, 1] pixels (L-inf above 1, any eps not finite).

    Raises:
        ConfigError: naming the eps and how to write it.
    """
    value = parse_eps(eps)
    if norm == "linf" and value > MAX_LINF_EPS:
        example = f"{value:g}/255" if value <= 255 else "4/255"
        raise ConfigError(f"L-inf eps {value:g} is above 1: pixels lie in [0, 1], so it allows any image; write the "
                          f"radius in [0, 1] pixel units, e.g. {example}")
    return value


def format_eps(eps: float) -> str:
    """Write eps as 'k/255' when it is one (within float error), otherwise as a short float."""
    frac = Fraction(eps * 255).limit_denominator(8)
    if frac.denominator == 1 and math.isclose(float(frac) / 255, eps, rel_tol=1e-6, abs_tol=1e-9) and eps > 0:
        return f"{frac.numerator}/255"
    return f"{eps:g}"


@dataclass(frozen=True)
class ThreatModel:
    """An attack's norm and radius, in [0, 1] pixel units."""

    norm: Norm
    eps: float

    def __post_init__(self) -> None:
        check_eps(self.norm, self.eps)

    def __str__(self) -> str:
        return f"{'L-inf' if self.norm == 'linf' else 'L2'} {format_eps(self.eps)}"

    def to_dict(self) -> dict:
        return {"norm": self.norm, "eps": self.eps}

    @classmethod
    def parse(cls, norm: str, eps: str | float) -> ThreatModel:
        return cls(parse_norm(norm), parse_eps(eps))
