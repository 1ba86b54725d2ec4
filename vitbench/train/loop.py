"""The training loop every recipe shares. Read it top to bottom: data, model, optimiser, epochs, export."""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch


from vitbench.data import open_dataset
from vitbench.engine import dist_world, resolve_device
from vitbench.train import checkpoint
from vitbench.train.config import TrainConfig
from vitbench.train.data import make_loader, mix_batch
from vitbench.train.optim import lr_at, make_optimizer, set_lr
from vitbench.train.recipes import get_recipe
from vitbench.zoo.archs import build_network
from vitbench.zoo.wrapper import RobustModel

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    out: Path
    weights: Path
    epochs: list[dict]
    epoch_weights: list[tuple[int, Path]]


def build_model(config: TrainConfig, num_classes: int, device: torch.device, zoo: str | None = None) -> RobustModel:
    """A fresh network (or the zoo entry ``config.init``, looked up in ``zoo``) wrapped to take [0, 1] input."""
    if config.init:
        from vitbench.zoo.load import load_model
        from vitbench.zoo.schema import load_zoo
        model = load_model(load_zoo(zoo).get(config.init), device="cpu").model
        if model.num_classes != num_classes:
            model.net.reset_classifier(num_classes)
            model.num_classes = num_classes
        return model.to(device)
    kwargs = dict(config.arch_args)
    if config.drop_path > 0:
        kwargs["drop_path_rate"] = config.drop_path
    net = build_network(config.arch, num_classes=num_classes, arch_args=kwargs, adapter=config.adapter)
    return RobustModel(net, mean=config.mean, std=config.std, name=config.arch, num_classes=num_classes,
                       input_size=config.input_size).to(device)


@torch.no_grad()
def _accuracy(model, x, y, batch_size: int = 256) -> float:
    return sum((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum().item()
               for i in range(0, len(x), batch_size)) / max(len(x), 1)


def evaluate(model, val, config: TrainConfig, device) -> dict:
    """Clean and PGD-10 accuracy (at the final training eps) on the first ``val_examples`` validation images."""
    if val is None:
        return {}
    from vitbench.attacks.pgd import pgd, random_start, step_size
    from vitbench.zoo.schema import Preprocessing
    prep = Preprocessing(input_size=config.input_size, interpolation=config.interpolation, crop_pct=1.0)
    n = min(config.val_examples, len(val))
    x, y = val.load(0, n, prep)
    x, y = x.to(device), y.to(device)
    model.eval()
    out = {"val_clean": _accuracy(model, x, y)}
    if config.attack_eps > 0:
        gen = torch.Generator().manual_seed(0)
        init = random_start(tuple(x.shape), norm=config.attack_norm, eps=config.attack_eps, generator=gen, device=device)
        res = pgd(model, x, y, norm=config.attack_norm, eps=config.attack_eps, steps=10,
                  alpha=step_size(config.attack_eps, 10), inits=[init])
        out["val_pgd10"] = float((~res.success).float().mean())
    model.train()
    return out


def train(config: TrainConfig, *, out: Path, device: str = "auto", resume: bool = False,
          workers: int = 0, zoo: str | None = None) -> TrainResult:
    """Train with ``config.recipe``; writes out/last.pt every epoch and out/model.safetensors at the end.

    Under torchrun every rank trains its share of each batch (DDP; gloo on CPU, nccl on GPU); rank 0 evaluates,
    logs sums over all ranks and writes the checkpoints. ``zoo`` is the user zoo file ``config.init`` is read from.
    """
    rank, world = dist_world()
    dev = resolve_device(device)
    torch.manual_seed(config.seed + rank)
    out.mkdir(parents=True, exist_ok=True)
    recipe = get_recipe(config.recipe)

    # data
    train_set = open_dataset(config.data)
    val = open_dataset(config.val_data) if config.val_data and rank == 0 else None
    num_classes = train_set.label_space.num_classes
    loader = make_loader(train_set, config, rank=rank, world=world, workers=workers)
    steps_per_epoch = len(loader)

    # model, recipe state, optimiser
    model = build_model(config, num_classes, dev, zoo)
    recipe.check(model, config)
    state = recipe.setup(model, config, dev)
    optimizer = make_optimizer(model, lr=config.lr, weight_decay=config.weight_decay)
    start_epoch, step = 0, 0
    saved = checkpoint.load(out, config) if resume else None
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        _load_recipe_state(state, saved["recipe"])
        torch.set_rng_state(saved["rng_cpu"])
        start_epoch, step = saved["epoch"] + 1, saved["step"]
        log.warning("resuming %s at epoch %d", out, start_epoch)
    net = _maybe_ddp(model, dev, world)
    use_amp = config.amp and dev.type == "cuda"
    history = _read_history(out, start_epoch)

    for epoch in range(start_epoch, config.epochs):
        loader.sampler.set_epoch(epoch)
        t0 = time.perf_counter()
        logs = dict(recipe.on_epoch_start(epoch, model, loader, config, state))
        model.train()
        seen = correct = 0
        loss_sum = 0.0
        for x, y in _bar(loader, epoch, config, rank):
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            x, target = mix_batch(x, y, config, num_classes)
            set_lr(optimizer, lr_at(step, steps_per_epoch=steps_per_epoch, epochs=config.epochs, lr=config.lr,
                                    min_lr=config.min_lr, warmup_epochs=config.warmup_epochs,
                                    warmup_lr=config.warmup_lr, cooldown_epochs=config.cooldown_epochs))
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_amp):
                result = recipe.loss(net, x, target, epoch, config, state)
            optimizer.zero_grad(set_to_none=True)
            result.loss.backward()
            recipe.after_backward(state)
            optimizer.step()
            step += 1
            seen += len(y)
            correct += (result.logits.argmax(1) == y).sum().item()
            loss_sum += result.loss.item() * len(y)
            logs.update(result.logs)  # the last batch's values (tensors stay on the device until the epoch ends)
        seen, correct, loss_sum = _sum_over_ranks(seen, correct, loss_sum, dev, world)
        record = {"epoch": epoch, "loss": loss_sum / max(seen, 1), "train_acc": correct / max(seen, 1),
                  "lr": optimizer.param_groups[0]["lr"], "eps": recipe.train_eps(epoch, config),
                  **{k: float(v) for k, v in logs.items()}}
        if rank == 0:
            record.update(evaluate(model, val, config, dev))
            record["seconds"] = round(time.perf_counter() - t0, 2)
            history.append(record)
            _log_epoch(out, record, config)
            checkpoint.save(out, epoch=epoch, config=config, model_state=model.state_dict(),
                            optim_state=optimizer.state_dict(), recipe_state=_recipe_state(state), step=step)
            done = epoch + 1
            if config.keep_epoch_checkpoints and (done % config.checkpoint_every == 0 or done == config.epochs):
                export_weights(model, out / "epochs" / f"epoch_{done:03d}.safetensors")
    epoch_weights = sorted((int(p.stem.split("_")[1]), p) for p in (out / "epochs").glob("epoch_*.safetensors")) \
        if config.keep_epoch_checkpoints else []
    weights = export_weights(model, out / "model.safetensors") if rank == 0 else out / "model.safetensors"
    return TrainResult(out, weights, history, epoch_weights)


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
    from vitbench.cli._common import progress_iter
    return progress_iter(loader, total=len(loader), desc=f"epoch {epoch + 1}/{config.epochs}", unit="batches",
                         enabled=rank == 0)


def _log_epoch(out: Path, record: dict, config: TrainConfig) -> None:
    with open(out / "log.jsonl", "a") as fh:
        fh.write(json.dumps(record) + "\n")
    extras = " ".join(f"{k} {100 * v:.1f}%" for k, v in record.items() if k.startswith("val_"))
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


def _recipe_state(state: dict) -> dict:
    return {k: v.state_dict() for k, v in state.items() if hasattr(v, "state_dict")}


def _load_recipe_state(state: dict, saved: dict) -> None:
    for key, value in saved.items():
        if key in state and hasattr(state[key], "load_state_dict"):
            state[key].load_state_dict(value)


