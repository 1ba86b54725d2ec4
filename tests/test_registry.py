"""The one Registry type behind suites and dataset kinds: discovery, duplicates refused, suggestions."""

import pytest

from vitbench.errors import ConfigError, NotFoundError
from vitbench.registry import Registry


def test_discovers_every_module_of_its_package():
    from vitbench.data.specs import KINDS
    from vitbench.suites import SUITES
    assert {"digits", "folder", "imagenet-val", "cifar10", "parquet", "imagenet-a", "cifar-p"} <= set(KINDS.names())
    assert {"clean", "autoattack", "pgd_sweep", "corruptions", "semantic"} <= set(SUITES.names())


def test_a_taken_name_is_refused_with_both_places():
    reg: Registry[int] = Registry("widget", "vitbench.data")
    reg.add("a", 1, where="mod_one")
    reg.add("a", 1, where="mod_one")  # the same module registering again (a re-import) is fine
    with pytest.raises(ConfigError, match="widget 'a' is defined twice \\(mod_one and mod_two\\)"):
        reg.add("a", 2, where="mod_two")


def test_unknown_name_suggests():
    from vitbench.suites import SUITES
    with pytest.raises(NotFoundError, match="did you mean 'autoattack'"):
        SUITES.get("autoatack")
