"""The guest image: a Debian bookworm root filesystem with a database server and the guest agent.

One image per database profile: PostgreSQL 15 (the default) or MariaDB 10.11, both Debian's own.

Built once with mmdebstrap from the host's own apt sources, cached under
``<cache>/images/<recipe hash>/`` and reused by every lab: a recipe change gives a new hash and a
new image, an unchanged recipe never rebuilds. Built in a temporary directory beside the final one
and renamed into place, so an interrupted build never leaves a half image that looks complete.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

from ..dialects import DEFAULT_DATABASE
from ..errors import ImageError
from ..progress import step
from .imagecache import images_in_use
from .recipe import GuestImage, cached_image, guest_dir, image_at, image_dir, load_recipe

# Host apt settings that decide whether downloads work here (proxies, snapshot mirrors).
HOST_APT_OPTIONS = (
    "Acquire::http::Proxy",
    "Acquire::https::Proxy",
    "Acquire::Check-Valid-Until",
    "Acquire::Check-Date",
)


def host_apt_sources() -> list[Path]:
    """The host's own apt source files, passed to mmdebstrap verbatim (no mirror is hard-coded)."""
    etc = Path("/etc/apt")
    found = [etc / "sources.list"] if (etc / "sources.list").is_file() else []
    found += sorted(p for p in (etc / "sources.list.d").glob("*")
                    if p.suffix in (".list", ".sources") and p.is_file())
    found = [p for p in found if p.read_text().strip()]
    if not found:
        raise ImageError("the host has no apt sources (/etc/apt/sources.list[.d]); "
                         "the guest image is built from the host's own apt configuration")
    return found


def host_apt_options() -> list[str]:
    opts = []
    for key in HOST_APT_OPTIONS:
        r = subprocess.run(["apt-config", "dump", key], capture_output=True, text=True)
        for line in r.stdout.splitlines():
            if line.startswith(key + " ") and not line.endswith('"";'):
                opts.append(line.rstrip(";"))
    return opts


def _run(cmd: list[str], what: str, log: Path) -> None:
    with open(log, "a") as fh:
        fh.write(f"$ {' '.join(cmd)}\n")
        fh.flush()
        r = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-25:])
        raise ImageError(f"{what} failed (exit {r.returncode}); last lines of {log}:\n{tail}")


def build_image(force: bool = False, database: str = DEFAULT_DATABASE) -> GuestImage:
    recipe = load_recipe(database=database)
    existing = cached_image(recipe)
    if existing and not force:
        step(f"guest image {recipe.digest()} is cached at {existing.directory}")
        return existing
    for tool in ("mmdebstrap", "mkfs.ext4", "qemu-img"):
        if not shutil.which(tool):
            raise ImageError(f"{tool} not found; run `make setup` to install the lab's packages")
    if os.geteuid() != 0:
        raise ImageError("building the guest image needs root (mmdebstrap root mode, mkfs -d)")

    final = image_dir(recipe)
    if final.exists():
        _refuse_in_use(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.building-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    log = final.parent / f"{final.name}.build.log"
    log.write_text("")
    t0 = time.monotonic()
    try:
        rootdir = tmp / "root"
        cmd = ["mmdebstrap", "--mode=root", "--format=directory", f"--variant={recipe.variant}",
               "--include=" + ",".join(recipe.packages),
               f"--hook-directory={guest_dir() / 'hooks'}"]
        cmd += [f"--aptopt={o}" for o in host_apt_options()]
        cmd += [recipe.suite, str(rootdir)] + [str(p) for p in host_apt_sources()]
        step(f"building the {database} guest image {recipe.digest()} with mmdebstrap "
             f"(Debian {recipe.suite}, {len(recipe.packages)} packages); log: {log}")
        _run(cmd, "mmdebstrap", log)
        step(f"root filesystem ready after {time.monotonic() - t0:.0f} s; extracting kernel")
        kernels = sorted((rootdir / "boot").glob("vmlinuz-*"))
        initrds = sorted((rootdir / "boot").glob("initrd.img-*"))
        if not kernels or not initrds:
            raise ImageError(f"no kernel/initrd in {rootdir}/boot; see {log}")
        shutil.copy2(kernels[-1], tmp / "vmlinuz")
        shutil.copy2(initrds[-1], tmp / "initrd.img")
        step(f"making ext4 ({recipe.rootfs_size}) and qcow2 base disk")
        raw = tmp / "rootfs.raw"
        _run(["mkfs.ext4", "-q", "-F", "-L", "availlab-root", "-d", str(rootdir), str(raw),
              recipe.rootfs_size], "mkfs.ext4", log)
        _run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw),
              str(tmp / "rootfs.qcow2")], "qemu-img convert", log)
        raw.unlink()
        shutil.rmtree(rootdir)
        # The base is shared by every VM's overlay: never written to once built.
        os.chmod(tmp / "rootfs.qcow2", 0o444)
        meta = {"digest": recipe.digest(), "recipe": asdict(recipe), "kernel": kernels[-1].name,
                "built_at": time.time(), "build_seconds": round(time.monotonic() - t0, 1)}
        (tmp / "image.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
        if final.exists():
            _refuse_in_use(final)  # again: a VM may have been created on it during the build
            shutil.rmtree(final)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    step(f"guest image built in {time.monotonic() - t0:.0f} s: {final}")
    return image_at(final, recipe.digest())


def _refuse_in_use(image: Path) -> None:
    """Rebuilding replaces the base under every VM overlay of it: the guests would read a
    different filesystem under their own writes on the next boot or migration."""
    used, unsure = images_in_use()
    who = used.get(image.resolve())
    if who or unsure:
        raise ImageError(f"image {image.name} is not rebuilt: " + (f"VM {who} uses it as its base disk; "
                         "delete that VM first" if who else f"cannot tell whether a VM uses it ({'; '.join(unsure)})"))


def ensure_image(database: str = DEFAULT_DATABASE) -> GuestImage:
    return cached_image(load_recipe(database=database)) or build_image(database=database)


if __name__ == "__main__":  # pragma: no cover - manual use
    print(build_image(force="--force" in sys.argv))
