"""The training loop every recipe shares. Read it top to bottom: data, model, optimiser, epochs, export."""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from timm.scheduler.scheduler import Scheduler
from torch.utils.data import DataLoader

from vitbench.data import open_dataset
from vitbench.engine import dist_world, resolve_device
from vitbench.training import checkpoint
from vitbench.training.config import TrainConfig
from vitbench.training.data import held_out_batches, make_loader, mix_batch, seed_host_rngs, split_holdout
from vitbench.training.optim import current_lr, make_optimizer, make_scheduler, scaled_lr
from vitbench.training.recipes import Recipe, get_recipe
from vitbench.training.selection import Best, accuracies, make_best, selection_record
from vitbench.zoo.archs import build_network
from vitbench.zoo.wrapper import RobustModel

log = logging.getLogger(__name__)


BEST = "best.safetensors"       # the selected epoch's weights while training runs
EXPORT = "model.safetensors"    # the weights the run exports (the selected epoch, or the last)


@dataclass
class TrainResult:
    out: Path
    weights: Path                       # the exported weights (OUT/model.safetensors)
    epochs: list[dict]                  # the per-epoch log
    epoch_weights: list[tuple[int, Path]]  # (epoch, file) kept along training; with selection the last epoch too
    selection: dict | None = None       # the rule, metric, chosen and last epoch (None: the last epoch is exported)
    exported_epoch: int = 0             # the epoch (1-based) whose weights ``weights`` holds


def build_model(config: TrainConfig, num_classes: int, device: torch.device, zoo: str | None = None) -> RobustModel:
    """A fresh network (or the zoo entry ``config.init``, looked up in ``zoo``) wrapped to take [0, 1] input."""
    if config.init:
        from vitbench.zoo.load import load_model
        from vitbench.zoo.schema import load_zoo
        entry = load_zoo(zoo).get(config.init)
        model = load_model(entry, device="cpu").model
        if config.drop_path > 0:  # the same weights in a network built with drop-path (the authors' fine-tuning)
            net = build_network(entry.arch, num_classes=entry.num_classes, adapter=entry.adapter,
                                arch_args={**entry.arch_args, "drop_path_rate": config.drop_path})
            net.load_state_dict(model.net.state_dict())
            model.net = net
        if model.num_classes != num_classes:
            model.net.reset_classifier(num_classes)
            model.num_classes = num_classes
        return model.to(device)
    kwargs = dict(config.arch_args)
    if config.drop_path > 0:
        kwargs["drop_path_rate"] = config.drop_path
    net = build_network(config.arch, num_classes=num_classes, arch_args=kwargs, adapter=config.adapter)
    model = RobustModel(net, mean=config.mean, std=config.std, name=config.arch, num_classes=num_classes,
                        input_size=config.input_size)
    _check_forward(model, config)
    return model.to(device)


def _check_forward(model: RobustModel, config: TrainConfig) -> None:
    """One forward pass at the training resolution; a network that cannot take it is one error line."""
    from vitbench.errors import ConfigError
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(2, 3, config.input_size, config.input_size))
    except (RuntimeError, AssertionError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"train: {config.arch} cannot take {config.input_size} px inputs ({first[:120]}): set "
                          "--set input_size=N to the size it takes, or --arch-arg img_size=N for a ViT") from None
    finally:
        model.train(was)


def evaluate(model, val, config: TrainConfig, device) -> dict:
    """Clean and PGD-10 accuracy (at the final training eps) on the first ``val_examples`` validation images."""
    if val is None:
        return {}
    from vitbench.zoo.schema import Preprocessing
    prep = Preprocessing(input_size=config.input_size, interpolation=config.interpolation, crop_pct=1.0)
    return accuracies(model, [val.load(0, min(config.val_examples, len(val)), prep)], config, device, "val")


@dataclass
class _Run:
    """What one training run's epochs share (built once in ``train``)."""

    config: TrainConfig
    out: Path
    model: RobustModel                  # the bare model (checkpoints, evaluation)
    net: torch.nn.Module                # the model the loss runs on (DDP-wrapped under torchrun)
    recipe: Recipe
    state: dict
    optimizer: torch.optim.Optimizer
    scheduler: Scheduler                # timm's; step(epoch) every epoch, step_update(step) every batch
    loader: DataLoader
    device: torch.device
    rank: int
    world: int
    num_classes: int
    best: Best | None
    step: int = 0


def train(config: TrainConfig, *, out: Path, device: str = "auto", resume: bool = False,
          workers: int = 0, zoo: str | None = None) -> TrainResult:
    """Train with ``config.recipe``; writes out/last.pt every epoch and out/model.safetensors at the end.

    Under torchrun every rank trains its share of each batch (DDP; gloo on CPU, nccl on GPU); rank 0 evaluates,
    logs sums over all ranks, selects the epoch to export and writes the checkpoints. ``zoo`` is the user zoo
    file ``config.init`` is read from.
    """
    rank, world = dist_world()
    dev = resolve_device(device)
    torch.manual_seed(config.seed + rank)
    out.mkdir(parents=True, exist_ok=True)
    recipe = get_recipe(config.recipe)

    # data: the training set less the held-out split model selection evaluates on (rank 0)
    train_set = open_dataset(config.data)
    train_idx, held_idx = split_holdout(len(train_set), config.holdout_fraction, config.seed)
    val = open_dataset(config.val_data) if config.val_data and rank == 0 else None
    num_classes = train_set.label_space.num_classes
    loader = make_loader(train_set, config, rank=rank, world=world, workers=workers, indices=train_idx)

    # model, recipe state, optimiser and schedule (timm's), the best epoch so far
    model = build_model(config, num_classes, dev, zoo)
    recipe.check(model, config)
    state = recipe.setup(model, config, dev)
    check_recipe_state(config.recipe, state)
    optimizer = make_optimizer(model.net, config, scaled_lr(config, world))
    run = _Run(config, out, model, model, recipe, state, optimizer, make_scheduler(optimizer, config, len(loader)),
               loader, dev, rank, world, num_classes, make_best(config))
    start_epoch = _resume(run) if resume else 0
    run.net = _maybe_ddp(model, dev, world)
    history = _read_history(out, start_epoch)

    for epoch in range(start_epoch, config.epochs):
        t0 = time.perf_counter()
        record = _train_epoch(run, epoch)
        if rank == 0:
            record.update(evaluate(model, val, config, dev))
            if held_idx:
                record.update(accuracies(model, held_out_batches(train_set, held_idx, config), config, dev,
                                         "holdout"))
            record["seconds"] = round(time.perf_counter() - t0, 2)
            history.append(record)
            _end_epoch(run, epoch, record)
    if rank != 0:
        return TrainResult(out, out / EXPORT, history, [])
    return _finish(model, out, config, run.best, history)


def _resume(run: _Run) -> int:
    """Load OUT/last.pt (if any) into the run; the epoch to start from."""
    saved = checkpoint.load(run.out, run.config)
    if saved is None:
        return 0
    run.model.load_state_dict(saved["model"])
    run.optimizer.load_state_dict(saved["optimizer"])
    _load_recipe_state(run.state, saved["recipe"])
    if run.best is not None:
        run.best.load_state_dict(saved["selection"])
    torch.set_rng_state(saved["rng_cpu"])
    run.step = saved["step"]
    log.warning("resuming %s at epoch %d", run.out, saved["epoch"] + 1)
    return saved["epoch"] + 1


def _train_epoch(run: _Run, epoch: int) -> dict:
    """One pass over the loader; the epoch's log record (sums over DDP ranks)."""
    config, dev = run.config, run.device
    run.loader.sampler.set_epoch(epoch)
    seed_host_rngs(config.seed, run.rank, epoch)
    run.scheduler.step(epoch)
    logs = dict(run.recipe.on_epoch_start(epoch, run.model, run.loader, config, run.state))
    run.model.train()
    use_amp = config.amp and dev.type == "cuda"
    seen = correct = 0
    loss_sum = 0.0
    for x, y in _bar(run.loader, epoch, config, run.rank):
        x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
        x, target = mix_batch(x, y, config, run.num_classes)
        run.scheduler.step_update(run.step)                 # per-step schedules only (lr_per_step)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_amp):
            result = run.recipe.loss(run.net, x, target, epoch, config, run.state)
        run.optimizer.zero_grad(set_to_none=True)
        result.loss.backward()
        run.recipe.after_backward(run.state)
        run.optimizer.step()
        run.step += 1
        seen += len(y)
        correct += (result.logits.argmax(1) == y).sum().item()
        loss_sum += result.loss.item() * len(y)
        logs.update(result.logs)  # the last batch's values (tensors stay on the device until the epoch ends)
    seen, correct, loss_sum = _sum_over_ranks(seen, correct, loss_sum, dev, run.world)
    return {"epoch": epoch, "loss": loss_sum / max(seen, 1), "train_acc": correct / max(seen, 1),
            "lr": current_lr(run.optimizer), "eps": run.recipe.train_eps(epoch, config),
            **{k: float(v) for k, v in logs.items()}}


def _end_epoch(run: _Run, epoch: int, record: dict) -> None:
    """Rank 0 after an evaluated epoch: keep the best weights, log, checkpoint (best first, then last.pt)."""
    if run.best is not None and run.best.offer(epoch + 1, record[run.best.metric]):
        export_weights(run.model, run.out / BEST)
    _log_epoch(run.out, record, run.config)
    checkpoint.save(run.out, epoch=epoch, config=run.config, model_state=run.model.state_dict(),
                    optim_state=run.optimizer.state_dict(), recipe_state=_recipe_state(run.state), step=run.step,
                    selection=run.best.state_dict() if run.best is not None else {})
    if _keeps_epoch(run.config, epoch + 1):
        export_weights(run.model, run.out / "epochs" / f"epoch_{epoch + 1:03d}.safetensors")


def _keeps_epoch(config: TrainConfig, done: int) -> bool:
    """Whether epoch ``done`` (1-based) is kept under OUT/epochs: every ``checkpoint_every``-th with
    ``keep_epoch_checkpoints``, and the last one whenever another epoch may be exported instead."""
    last = done == config.epochs
    return (config.keep_epoch_checkpoints and (done % config.checkpoint_every == 0 or last)) or \
        (last and config.select_by != "last")


def _finish(model: RobustModel, out: Path, config: TrainConfig, best: Best | None, history: list[dict]
            ) -> TrainResult:
    """Export OUT/model.safetensors (the selected epoch's weights, else the last) and list the kept epochs."""
    folder = out / "epochs"
    epoch_weights = sorted((int(p.stem.split("_")[1]), p) for p in folder.glob("epoch_*.safetensors")) \
        if folder.is_dir() and (config.keep_epoch_checkpoints or best is not None) else []
    if best is None or best.epoch == 0:        # no selection (or no finite held-out value): the last epoch
        return TrainResult(out, export_weights(model, out / EXPORT), history, epoch_weights,
                           exported_epoch=config.epochs)
    tmp = out / f".{EXPORT}.tmp"
    shutil.copyfile(out / BEST, tmp)
    tmp.replace(out / EXPORT)
    return TrainResult(out, out / EXPORT, history, epoch_weights, selection_record(config, best), best.epoch)


def export_weights(model: RobustModel, path: Path) -> Path:
    """The timm network's weights as safetensors (the layout zoo entries load)."""
    from safetensors.torch import save_file
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.net.state_dict().items()}
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(state, str(tmp))
    tmp.replace(path)
    return path


def _maybe_ddp(model, dev, world):
    if world <= 1:
        return model
    from torch.nn.parallel import DistributedDataParallel
    return DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)


def _sum_over_ranks(seen: int, correct: int, loss_sum: float, dev: torch.device, world: int):
    """Per-epoch counts summed over DDP ranks (identity in one process)."""
    if world <= 1:
        return seen, correct, loss_sum
    import torch.distributed as dist
    sums = torch.tensor([seen, correct, loss_sum], dtype=torch.float64, device=dev)
    dist.all_reduce(sums)
    return int(sums[0]), int(sums[1]), float(sums[2])


def _bar(loader, epoch: int, config: TrainConfig, rank: int):
    from vitbench.runtime import progress_iter
    return progress_iter(loader, total=len(loader), desc=f"epoch {epoch + 1}/{config.epochs}", unit="batches",
                         enabled=rank == 0)


def _log_epoch(out: Path, record: dict, config: TrainConfig) -> None:
    with open(out / "log.jsonl", "a") as fh:
        fh.write(json.dumps(record) + "\n")
    extras = " ".join(f"{k} {100 * v:.1f}%" for k, v in record.items() if k.startswith(("val_", "holdout_")))
    print(f"epoch {record['epoch'] + 1}/{config.epochs}  loss {record['loss']:.4f}  "
          f"train-acc {100 * record['train_acc']:.1f}%  {extras}  lr {record['lr']:.2e}  eps {record['eps']:.4g}  "
          f"({record['seconds']}s)", file=sys.stderr, flush=True)


def _read_history(out: Path, start_epoch: int) -> list[dict]:
    path = out / "log.jsonl"
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    kept = [r for r in rows if r["epoch"] < start_epoch]
    path.write_text("".join(json.dumps(r) + "\n" for r in kept))
    return kept


def _plain(value) -> bool:
    """Whether a value saves and loads as it is in a weights-only checkpoint (tensors, numbers, strings, and
    lists, tuples and dicts of them)."""
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def check_recipe_state(recipe: str, state: dict) -> None:
    """Every value a recipe keeps must survive resume: an object with ``state_dict()`` (modules, optimisers), a
    plain value (tensors, counters), or a frozen dataclass its setup derives from the config again.

    Raises:
        ConfigError: naming the value that would be lost on resume, before any training.
    """
    from dataclasses import is_dataclass

    from vitbench.errors import ConfigError
    for key, value in state.items():
        frozen = is_dataclass(value) and type(value).__dataclass_params__.frozen
        if not (hasattr(value, "state_dict") or _plain(value) or frozen):
            raise ConfigError(f"recipe {recipe}: its state {key!r} ({type(value).__name__}) has no state_dict() and "
                              "is not a tensor or plain value, so it would be lost on --resume: give it "
                              "state_dict()/load_state_dict() or keep it as a tensor")


def _recipe_state(state: dict) -> dict:
    """What a checkpoint keeps of the recipe's state: state dicts, and plain values (a frozen dataclass is
    derived from the config by the recipe's setup and rebuilt on resume)."""
    return {"state_dicts": {k: v.state_dict() for k, v in state.items() if hasattr(v, "state_dict")},
            "values": {k: v for k, v in state.items() if not hasattr(v, "state_dict") and _plain(v)}}


def _load_recipe_state(state: dict, saved: dict) -> None:
    dicts, values = (saved["state_dicts"], saved["values"]) if "state_dicts" in saved else (saved, {})
    for key, value in dicts.items():
        if key in state and hasattr(state[key], "load_state_dict"):
            state[key].load_state_dict(value)
    state.update({k: v for k, v in values.items() if k in state})


