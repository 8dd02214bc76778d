"""The guest image verbs of the command line: `image build`, `image list`, `image prune`. Apart
from cli.py only to keep both short; the same conventions."""

from __future__ import annotations

import argparse
import json

from .dialects import DEFAULT_DATABASE
from .lab.recipe import DATABASE_PACKAGES

DATABASES = tuple(DATABASE_PACKAGES)  # the profiles with a lab guest image


def cmd_image_build(args: argparse.Namespace) -> int:
    from .lab.image import build_image

    img = build_image(force=args.force, database=args.database)
    print(f"guest image {img.digest}: {img.directory}")
    return 0


def cmd_image_list(args: argparse.Namespace) -> int:
    from .lab.imagecache import cached_images

    images = cached_images()
    if args.json:
        print(json.dumps([{**i.__dict__, "directory": str(i.directory)} for i in images], indent=2))
        return 0
    for i in images:
        print(f"{i.digest}  {i.database:<10}  {i.size_bytes / 2**20:6.0f} MiB  {i.status}")
    stale = [i for i in images if i.status == "stale"]
    if stale:
        print(f"{len(stale)} stale, {sum(i.size_bytes for i in stale) / 2**20:.0f} MiB: `availlab image prune --apply`")
    return 0


def cmd_image_prune(args: argparse.Namespace) -> int:
    from .lab.imagecache import prune

    dry = not args.apply  # as `backups prune`: a destructive verb says first, and acts on --apply
    gone = prune(dry_run=dry)
    verb = "would remove" if dry else "removed"
    for i in gone:
        print(f"{verb} {i.directory} ({i.database}, {i.size_bytes / 2**20:.0f} MiB)")
    print(f"{verb} {len(gone)} image(s), {sum(i.size_bytes for i in gone) / 2**20:.0f} MiB; "
          "current images and those under a VM's disk are kept" + ("; --apply removes them" if dry and gone else ""))
    return 0


def add_parsers(sub, parser_class: type[argparse.ArgumentParser]) -> None:
    img = sub.add_parser("image", help="the guest image").add_subparsers(
        dest="image_verb", required=True, parser_class=parser_class)
    b = img.add_parser("build", help="build (or reuse) the cached guest image")
    b.add_argument("--force", action="store_true", help="rebuild even if cached")
    b.add_argument("--database", choices=DATABASES, default=DEFAULT_DATABASE,
                   help="which database image (default: postgresql)")
    b.set_defaults(func=cmd_image_build)
    ls = img.add_parser("list", help="cached guest images: current, in use by a VM, or stale")
    ls.add_argument("--json", action="store_true", help="the images as JSON")
    ls.set_defaults(func=cmd_image_list)
    pr = img.add_parser("prune", help="stale cached images (never current ones or a VM's base): says which; "
                                      "--apply removes them")
    pr.add_argument("--apply", action="store_true", help="remove them (without it: a dry run, as backups prune)")
    pr.add_argument("--dry-run", action="store_true", help="the default; accepted for scripts written before")
    pr.set_defaults(func=cmd_image_prune)
