"""Zoo files: parsing, every bad-input error names file, entry and key; overlay on the bundled zoo."""

import pytest

from conftest import tiny_zoo_text
from vitbench.errors import ConfigError, NotFoundError
from vitbench.zoo.schema import load_zoo, parse_zoo


def test_parses_entry_fields(tiny_zoo):
    zoo = load_zoo(tiny_zoo)
    entry = zoo.get("tiny-vit.test")
    assert entry.arch == "vit_tiny_patch16_224"
    assert entry.arch_args["patch_size"] == 8
    assert entry.preprocessing.input_size == 32 and entry.preprocessing.mean == (0.5, 0.5, 0.5)
    assert entry.threat_model.norm == "linf" and entry.threat_model.eps == pytest.approx(0.1)
    assert entry.base_dir == tiny_zoo.parent.resolve()


def test_overlay_keeps_bundled_entries(tiny_zoo):
    zoo = load_zoo(tiny_zoo)
    assert "tiny-vit.test" in zoo.entries
    assert "digits-vit.light" in zoo.entries  # from the bundled zoo


def test_unknown_key_names_file_entry_and_key():
    text = tiny_zoo_text("x.safetensors").replace("    num_classes: 10", "    num_clases: 10\n    num_classes: 10")
    with pytest.raises(ConfigError) as err:
        parse_zoo(text, "my_zoo.yaml")
    msg = str(err.value)
    assert "my_zoo.yaml" in msg and "tiny-vit.test" in msg and "num_clases" in msg and "num_classes" in msg


def test_unknown_nested_key():
    text = tiny_zoo_text("x.safetensors").replace("crop_pct: 1.0", "crop: 1.0")
    with pytest.raises(ConfigError, match=r"preprocessing: unknown key 'crop'.*crop_pct"):
        parse_zoo(text, "z.yaml")


def test_malformed_yaml_gives_line():
    with pytest.raises(ConfigError, match=r"z.yaml: line \d+ malformed YAML"):
        parse_zoo("version: 1\nmodels:\n  a: [1, 2\n", "z.yaml")


def test_duplicate_entry_is_an_error():
    body = tiny_zoo_text("x.safetensors")
    entry = body.split("models:\n", 1)[1]
    with pytest.raises(ConfigError, match="duplicate key 'tiny-vit.test'"):
        parse_zoo(body + entry, "z.yaml")


@pytest.mark.parametrize("old, new, match", [
    ("num_classes: 10", "num_classes: ten", "expected an integer"),
    ("eps: 0.1", "eps: 4/0", "eps"),
    ("interpolation: bilinear", "interpolation: lanczos", "interpolation"),
    ("weights: {source: x.safetensors}", "weights: {source: x.safetensors, sha256: abc}", "64 hex digits"),
    ("num_classes: 10", "num_classes: 1", "num_classes"),
])
def test_bad_values(old, new, match):
    text = tiny_zoo_text("x.safetensors").replace(old, new)
    with pytest.raises(ConfigError, match=match):
        parse_zoo(text, "z.yaml")


def test_unknown_model_suggests(tiny_zoo):
    with pytest.raises(NotFoundError, match="did you mean 'tiny-vit.test'"):
        load_zoo(tiny_zoo).get("tiny-vit.tset")


def test_bundled_zoo_is_valid_and_documented():
    """Every entry of the bundled zoo parses, and every schema key appears in docs/zoo.md's schema section."""
    import dataclasses

    from conftest import REPO
    from vitbench.zoo import schema
    zoo = load_zoo()
    assert len(zoo.entries) >= 4
    page = (REPO / "docs" / "zoo.md").read_text()
    section = page.split("# Zoo schema", 1)[1].split("\n# ", 1)[0]
    for cls in (schema.ZooEntry, schema.Weights, schema.Preprocessing, schema.Published, schema.Provenance,
                schema.EpochCheckpoint, schema.ThreatSpec):
        for field in dataclasses.fields(cls):
            if field.name in ("name", "origin"):
                continue
            assert f"`{field.name}`" in section, f"docs/zoo.md schema does not document {cls.__name__}.{field.name}"
