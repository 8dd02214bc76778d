"""What a guest image is made of, and where a built one lives: the part of the image every
other module reads (the accelerator probe boots its kernel, VMs overlay its disk, the cache
prunes by its digest) without the build, which needs mmdebstrap and the host's apt setup.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import paths
from ..dialects import DEFAULT_DATABASE, DIALECTS, LAB_IMAGES
from ..errors import ImageError, UsageError

RECIPE_VERSION = 1
GUEST_PACKAGES = (
    "linux-image-cloud-amd64",
    "initramfs-tools",
    "qemu-guest-agent",
    "iproute2",
    "procps",
    "kmod",
)
# The database server each profile's image runs, as its dialect declares it (SQL Server has no lab
# image: it is reached on a real server through a DSN, see docs/real-cluster.md).
DATABASE_PACKAGES = {n: DIALECTS[n].image_packages for n in LAB_IMAGES}
ROOTFS_SIZE = "3G"


@dataclass(frozen=True)
class Recipe:
    suite: str = "bookworm"
    variant: str = "minbase"
    packages: tuple[str, ...] = GUEST_PACKAGES + DATABASE_PACKAGES[DEFAULT_DATABASE]
    database: str = DEFAULT_DATABASE
    rootfs_size: str = ROOTFS_SIZE
    files: dict[str, str] = field(default_factory=dict)  # relative path -> sha256 of content
    version: int = RECIPE_VERSION

    def digest(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class GuestImage:
    """A built image: base disk (qcow2) plus the kernel and initrd booted directly by QEMU."""

    directory: Path
    disk: Path
    kernel: Path
    initrd: Path
    digest: str

    @property
    def cmdline(self) -> str:
        return ("root=/dev/vda rw console=ttyS0 net.ifnames=0 init=/sbin/availlab-init "
                "panic=-1 loglevel=4")


def guest_dir() -> Path:
    return paths.lab_dir() / "guest"


def image_database(database: str) -> str:
    if database not in DATABASE_PACKAGES:
        raise UsageError(f"database: no lab guest image for {database!r} (images: {', '.join(DATABASE_PACKAGES)}; "
                         "SQL Server runs on a real server, see docs/real-cluster.md)")
    return database


def load_recipe(directory: Path | None = None, database: str = DEFAULT_DATABASE) -> Recipe:
    """The recipe is the package list plus every file under lab/guest: edit one, get a new image."""
    root = directory or guest_dir()
    if not (root / "init.sh").is_file():
        raise ImageError(f"guest recipe not found: {root}/init.sh is missing")
    files = {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file()
    }
    return Recipe(packages=GUEST_PACKAGES + DATABASE_PACKAGES[image_database(database)], database=database,
                  files=files)


def image_dir(recipe: Recipe) -> Path:
    return paths.cache_dir() / "images" / recipe.digest()


BOOT_FILES = ("vmlinuz", "initrd.img")  # what QEMU boots directly: in an image, a full backup set, a restored VM


def image_at(directory: Path, digest: str) -> GuestImage:
    return GuestImage(directory=directory, disk=directory / "rootfs.qcow2",
                      kernel=directory / BOOT_FILES[0], initrd=directory / BOOT_FILES[1], digest=digest)


def cached_image(recipe: Recipe | None = None) -> GuestImage | None:
    recipe = recipe or load_recipe()
    d = image_dir(recipe)
    if (d / "image.json").is_file():
        img = image_at(d, recipe.digest())
        if all(p.is_file() for p in (img.disk, img.kernel, img.initrd)):
            return img
    return None
