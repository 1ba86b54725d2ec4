"""From a finished training run to a zoo entry that records the recipe and its config."""

from __future__ import annotations

from pathlib import Path

from vitbench.training.config import TrainConfig
from vitbench.zoo.register import append_entry, prepare, source_for
from vitbench.zoo.schema import EpochCheckpoint, Preprocessing, Provenance, ThreatSpec, Weights, ZooEntry, user_zoo_path
from vitbench.zoo.sources import sha256_file


def _notes(config: TrainConfig, selection: dict | None) -> str:
    if not selection:
        return f"trained by vitbench train {config.recipe}"
    return (f"trained by vitbench train {config.recipe}; weights of epoch {selection['epoch']} of "
            f"{selection['last_epoch']} ({selection['rule']}); the last epoch is checkpoint "
            f"{selection['last_epoch']}")


def zoo_entry(name: str, config: TrainConfig, weights: Path, *, num_classes: int, dataset: str, zoo_file: Path,
              epoch_weights: list[tuple[int, Path]] = (), base=None, selection: dict | None = None) -> ZooEntry:
    """The entry for a trained model (arch and preprocessing from the config, or from the init entry).

    With model selection the weights are the chosen epoch's; ``provenance.selection`` records the rule and the
    epoch, and the last epoch is among ``checkpoints``.
    """
    threat = ThreatSpec(config.attack_norm, config.attack_eps) if config.attack_eps > 0 else None
    checkpoints = tuple(EpochCheckpoint(epoch=e, source=source_for(str(p), zoo_file), sha256=sha256_file(p))
                        for e, p in epoch_weights)
    provenance = Provenance(recipe=config.recipe, config=config.to_dict(), selection=selection,
                            notes=_notes(config, selection))
    if base is not None:  # fine-tuned from a zoo entry: same architecture and input pipeline
        return ZooEntry(name=name, arch=base.arch, arch_args=base.arch_args, adapter=base.adapter,
                        weights=Weights(source=source_for(str(weights), zoo_file)), num_classes=num_classes,
                        dataset=dataset, preprocessing=base.preprocessing, threat_model=threat or base.threat_model,
                        provenance=provenance, checkpoints=checkpoints, origin=str(zoo_file))
    prep = Preprocessing(input_size=config.input_size, interpolation=config.interpolation, crop_pct=1.0,
                         mean=tuple(config.mean), std=tuple(config.std))
    return ZooEntry(name=name, arch=config.arch, arch_args=dict(config.arch_args), adapter=config.adapter,
                    weights=Weights(source=source_for(str(weights), zoo_file)), num_classes=num_classes,
                    dataset=dataset, preprocessing=prep, threat_model=threat, provenance=provenance,
                    checkpoints=checkpoints, origin=str(zoo_file))


def register_trained(name: str, config: TrainConfig, weights: Path, *, num_classes: int, dataset: str,
                     zoo: str | None, epoch_weights=(), force: bool = False, selection: dict | None = None
                     ) -> ZooEntry:
    """Validate, pin and append the trained model's entry to the user's zoo file."""
    zoo_file = user_zoo_path(zoo)
    base = None
    if config.init:
        from vitbench.zoo.schema import load_zoo
        base = load_zoo(zoo).get(config.init)
    entry = zoo_entry(name, config, weights, num_classes=num_classes, dataset=dataset, zoo_file=zoo_file,
                      epoch_weights=epoch_weights, base=base, selection=selection)
    entry = prepare(entry)
    append_entry(zoo_file, entry, replace_existing=force)
    return entry
