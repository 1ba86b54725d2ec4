"""``vitbench analyze nullspace NAME``: the exact nullspace of a zoo ViT's patch embedding, and its check."""

from __future__ import annotations

import argparse
import json

from vitbench.cli._common import load_zoo


def add_parser(sub, parent) -> None:
    p = sub.add_parser("analyze", help="model analyses (nullspace of a ViT's patch embedding)", parents=[parent])
    asub = p.add_subparsers(dest="analyze_command", metavar="ANALYSIS", parser_class=type(p))
    asub.required = True
    ns = asub.add_parser("nullspace", parents=[parent],
                         help="dimension and basis of the patch embedding's nullspace; check the logits ignore it")
    ns.add_argument("name", help="zoo entry (a ViT with a patch_embed.proj conv)")
    ns.add_argument("--data", help="images for the check (default: uniform random images, seeded)")
    ns.add_argument("--n-examples", type=int, default=16, help="images in the check (default 16)")
    ns.add_argument("--vectors", type=int, default=16, help="basis vectors checked (default 16)")
    ns.add_argument("--scale", type=float, default=1.0,
                    help="L2 norm of the shift added to every patch, in normalised units (default 1)")
    ns.add_argument("--seed", type=int, default=0)
    ns.add_argument("--save-basis", metavar="FILE", help="write the basis (K, C, P, P) as safetensors")
    ns.add_argument("--json", action="store_true", help="print machine-readable results")
    ns.set_defaults(func=run_nullspace)


def _images(args: argparse.Namespace, entry):
    import torch

    from vitbench.errors import ConfigError
    if args.n_examples < 1:
        raise ConfigError("--n-examples must be >= 1")
    if args.data:
        from vitbench.data import open_dataset
        dataset = open_dataset(args.data)
        return dataset.load(0, min(args.n_examples, len(dataset)), entry.preprocessing)[0]
    size = entry.preprocessing.input_size
    return torch.rand((args.n_examples, 3, size, size), generator=torch.Generator().manual_seed(args.seed))


def run_nullspace(args: argparse.Namespace) -> int:
    from vitbench.training.nullspace_analysis import analyze
    from vitbench.zoo.load import load_model
    entry = load_zoo(args).get(args.name)
    model = load_model(entry, device="cpu").model
    space, inv = analyze(model, _images(args, entry), scale=args.scale, n_vectors=args.vectors, seed=args.seed)
    if args.save_basis:
        from safetensors.torch import save_file
        save_file({"basis": space.basis.float().contiguous()}, args.save_basis)
    report = {"model": entry.name, "patch_size": space.patch_size, "embed_dim": space.embed_dim,
              "patch_dim": space.in_dim, "rank": space.rank, "dimension": space.dimension,
              "lower_bound": space.lower_bound, "tolerance": space.tolerance, "scale": inv.scale,
              "vectors_checked": len(inv.basis_change),
              "max_logit_change": float(inv.basis_change.max()) if len(inv.basis_change) else None,
              "random_min_logit_change": float(inv.random_change.min())}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(_table(report))
    return 0


def _table(r: dict) -> str:
    from tabulate import tabulate
    change = "n/a (the nullspace is {0})" if r["max_logit_change"] is None else f"{r['max_logit_change']:.3g}"
    rows = [["patch embedding W", f"{r['embed_dim']} x {r['patch_dim']}  (D x 3P^2, P = {r['patch_size']})"],
            ["rank", r["rank"]],
            ["nullspace dimension", r["dimension"]],
            ["expected lower bound max(0, 3P^2 - D)",
             f"{r['lower_bound']}  (3P^2 - D = {r['patch_dim'] - r['embed_dim']})"],
            ["SVD tolerance", f"{r['tolerance']:.3g}"],
            [f"max logit change, {r['vectors_checked']} basis vectors (scale {r['scale']:g})", change],
            ["min over random directions of max logit change", f"{r['random_min_logit_change']:.3g}"]]
    return tabulate(rows, headers=[r["model"], ""], tablefmt="github", disable_numparse=True)
