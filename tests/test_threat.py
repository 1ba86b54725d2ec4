import math

import pytest

from vitbench.errors import ConfigError
from vitbench.threat import ThreatModel, format_eps, parse_eps, parse_norm


@pytest.mark.parametrize("text, value", [("4/255", 4 / 255), ("0.5", 0.5), ("8/255", 8 / 255), (0.1, 0.1),
                                         ("1e-2", 0.01), (" 2/255 ", 2 / 255), ("0", 0.0)])
def test_parse_eps(text, value):
    assert math.isclose(parse_eps(text), value, rel_tol=1e-12)


@pytest.mark.parametrize("text", ["four", "4/0", "-0.1", "inf", "1/2/3", "", "nan"])
def test_parse_eps_rejects(text):
    with pytest.raises(ConfigError, match="eps"):
        parse_eps(text)


def test_format_eps_round_trips_fractions():
    assert format_eps(4 / 255) == "4/255"
    assert format_eps(8 / 255) == "8/255"
    assert format_eps(0.5) == "0.5"
    assert format_eps(0.1) == "0.1"


def test_norms():
    assert parse_norm("Linf") == "linf"
    assert parse_norm("L2") == "l2"
    with pytest.raises(ConfigError, match="l1"):
        parse_norm("l1")
    assert str(ThreatModel.parse("linf", "4/255")) == "L-inf 4/255"
