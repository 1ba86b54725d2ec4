"""``vitbench zoo list | show NAME | register NAME ... | verify [NAME...]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vitbench.cli._common import add_threat_args, load_zoo
from vitbench.zoo.schema import INTERPOLATIONS


def add_parser(sub, parent) -> None:
    p = sub.add_parser("zoo", help="list, show, register and verify zoo models", parents=[parent])
    zsub = p.add_subparsers(dest="zoo_command", metavar="ZOO_COMMAND", parser_class=type(p))
    zsub.required = True

    ls = zsub.add_parser("list", help="one line per zoo entry", parents=[parent])
    ls.set_defaults(func=cmd_list)

    show = zsub.add_parser("show", help="an entry in full, with where its weights are and how they are trusted",
                           parents=[parent])
    show.add_argument("name")
    show.set_defaults(func=cmd_show)

    reg = zsub.add_parser("register", help="validate, hash and test-load a checkpoint, then add it to your zoo",
                          parents=[parent])
    reg.add_argument("name", help="entry name, arch.tag style (e.g. my-vit.light)")
    reg.add_argument("--arch", required=True, help="timm architecture name")
    reg.add_argument("--arch-arg", action="append", default=[], metavar="KEY=VALUE",
                     help="timm keyword argument (repeatable), e.g. img_size=32 patch_size=4 depth=6")
    reg.add_argument("--adapter", help="architecture adapter, e.g. xcit-patch4")
    reg.add_argument("--checkpoint", required=True, help="local path, https URL, gdrive:ID or hf-hub:ORG/REPO[/FILE]")
    reg.add_argument("--sha256", help="expected sha256 of the checkpoint file")
    reg.add_argument("--state-dict-key", help="key of the nested state dict (e.g. state_dict, model)")
    reg.add_argument("--strip-prefix", action="append", default=[], help="key prefix to strip (e.g. module.)")
    reg.add_argument("--num-classes", type=int, help="number of logits (default: from --dataset)")
    reg.add_argument("--dataset", default="imagenet", help="label space the model predicts (default imagenet)")
    reg.add_argument("--input-size", type=int)
    reg.add_argument("--interpolation", choices=INTERPOLATIONS)
    reg.add_argument("--crop-pct", type=float)
    reg.add_argument("--mean", type=float, nargs=3)
    reg.add_argument("--std", type=float, nargs=3)
    add_threat_args(reg, norm_help="norm the model was trained against (linf or l2), stored as its threat_model; "
                                   "suites attack at it when neither --eps nor the preset sets one (give with --eps)",
                    eps_help="radius the model was trained for, e.g. 4/255 or 0.5 (give with --norm)")
    reg.add_argument("--paper", help="paper or citation")
    reg.add_argument("--url", help="link to the paper or code")
    reg.add_argument("--force", action="store_true", help="replace an entry of the same name in the zoo file")
    reg.set_defaults(func=cmd_register)

    ver = zsub.add_parser("verify", help="load entries, check hashes and that a forward pass gives the declared logits",
                          parents=[parent])
    ver.add_argument("names", nargs="*", help="entries to verify (default: all)")
    ver.add_argument("--device", default="cpu")
    ver.set_defaults(func=cmd_verify)


def _threat(entry) -> str:
    return "-" if entry.threat_model is None else str(entry.threat_model.threat_model())


def cmd_list(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from vitbench.zoo import schema
    zoo = load_zoo(args)
    bundled = schema.read_zoo_file(schema.BUNDLED_ZOO)
    rows = []
    for name in zoo.names():
        e = zoo.entries[name]
        origin = "bundled" if Path(e.origin).resolve() == schema.BUNDLED_ZOO.resolve() else (
            "user, shadows bundled" if name in bundled else "user")
        published = next((p for p in e.published if p.metric == "autoattack"), None)
        rows.append([name, e.arch, e.dataset, _threat(e), e.provenance.recipe or "",
                     "" if published is None else f"{100 * published.value:.2f}", e.weights.source.split(":")[0]
                     if ":" in e.weights.source and not e.weights.source.startswith("/") else "file", origin])
    print(tabulate(rows, headers=["name", "arch", "dataset", "threat", "recipe", "published AA (%)", "source",
                                  "zoo"], tablefmt="github", disable_numparse=True))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    import yaml

    from vitbench.zoo import sources
    zoo = load_zoo(args)
    entry = zoo.get(args.name)
    print(yaml.safe_dump({entry.name: entry.to_yaml_dict()}, sort_keys=False, width=110).rstrip())
    print(f"# defined in: {entry.origin}")
    src = entry.weights.source
    if entry.weights.sha256:
        print(f"# sha256: {entry.weights.sha256} (pinned in the zoo entry)")
    elif sources.is_remote(src):
        record = sources.recorded_sha256(src)
        if record:
            print(f"# sha256: {record['sha256']} (trust on first use, recorded {record['recorded']})")
        else:
            print("# sha256: none published; the first verified download will be recorded (trust on first use)")
    if sources.is_remote(src):
        path = sources.cache_path(src)
        print(f"# local copy: {path if path.exists() else 'not downloaded yet'}")
    elif not src.startswith(("timm:", "robustbench:", "hf-hub:")):
        print(f"# file: {sources.local_path(src, entry.base_dir)}")
    return 0


def _parse_arch_args(pairs: list[str]) -> dict:
    import yaml

    from vitbench.errors import ConfigError
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--arch-arg {pair!r} is not KEY=VALUE (e.g. img_size=32)")
        out[key.strip()] = yaml.safe_load(value)
    return out


def cmd_register(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from vitbench.errors import ConfigError
    from vitbench.zoo import schema
    from vitbench.zoo.register import (
        append_entry,
        check_classes,
        default_preprocessing,
        input_warnings,
        prepare,
        source_for,
        writable_zoo,
    )
    from vitbench.zoo.schema import NAME_RE, Provenance, ThreatSpec, Weights, ZooEntry, user_zoo_path

    if not NAME_RE.match(args.name):
        raise ConfigError(f"name {args.name!r} may use letters, digits and . _ + - only")
    zoo_file = user_zoo_path(getattr(args, "zoo", None))
    writable_zoo(zoo_file)  # refuse the bundled zoo before any work
    arch_args = _parse_arch_args(args.arch_arg)
    num_classes = check_classes(args.dataset, args.num_classes)
    prep = default_preprocessing(args.arch, arch_args)
    overrides = {k: v for k, v in {"input_size": args.input_size, "interpolation": args.interpolation,
                                   "crop_pct": args.crop_pct, "mean": tuple(args.mean) if args.mean else None,
                                   "std": tuple(args.std) if args.std else None}.items() if v is not None}
    try:
        prep = replace(prep, **overrides)
    except ValueError as exc:
        raise ConfigError(f"preprocessing: {exc}") from None
    if (args.norm is None) != (args.eps is None):
        raise ConfigError("give both --norm and --eps for the threat model the model was trained for")
    try:
        entry = ZooEntry(
            name=args.name, arch=args.arch, arch_args=arch_args, adapter=args.adapter,
            weights=Weights(source=source_for(args.checkpoint, zoo_file), sha256=args.sha256,
                            state_dict_key=args.state_dict_key, strip_prefix=tuple(args.strip_prefix)),
            num_classes=num_classes, dataset=args.dataset, preprocessing=prep,
            threat_model=ThreatSpec(args.norm, args.eps) if args.norm else None,
            provenance=Provenance(paper=args.paper, url=args.url), origin=str(zoo_file))
    except ValueError as exc:
        raise ConfigError(f"register {args.name}: {exc}") from None
    for warning in input_warnings(entry):
        print(f"vitbench: warning: {warning}", file=sys.stderr)
    entry = prepare(entry)
    append_entry(zoo_file, entry, replace_existing=args.force)
    print(f"registered {entry.name} in {zoo_file} (sha256 {entry.weights.sha256 or 'n/a'})")
    if entry.name in schema.read_zoo_file(schema.BUNDLED_ZOO):
        print(f"vitbench: note: {entry.name} shadows the bundled entry of the same name: with this zoo file, "
              f"`{entry.name}` means the model just registered", file=sys.stderr)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from vitbench.engine import resolve_device
    from vitbench.errors import VitbenchError
    from vitbench.zoo.load import check_logits, load_model
    resolve_device(args.device)
    zoo = load_zoo(args)
    names = args.names or zoo.names()
    entries = [zoo.get(n) for n in names]
    failed = 0
    for entry in entries:
        try:
            loaded = load_model(entry, device=args.device)
            n = check_logits(loaded.model, entry, args.device)
            print(f"ok    {entry.name}: sha256 {loaded.weights_sha256[:16]}... ({loaded.trust}), {n} logits")
        except VitbenchError as exc:
            failed += 1
            print(f"FAIL  {entry.name}: {exc}")
        sys.stdout.flush()
    if failed:
        print(f"vitbench: error: {failed} of {len(entries)} entries failed verification", file=sys.stderr)
        return 1
    return 0
