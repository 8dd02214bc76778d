#!/bin/sh
# Before the kernel package installs: a small initramfs with only the virtio drivers, because a
# generic "most modules" initramfs takes seconds to unpack under TCG.
set -eu
root="$1"
mkdir -p "$root/etc/initramfs-tools/conf.d"
printf 'MODULES=list\nCOMPRESS=gzip\n' > "$root/etc/initramfs-tools/conf.d/availlab.conf"
printf '%s\n' virtio_pci virtio_blk virtio_net virtio_console ext4 > "$root/etc/initramfs-tools/modules"
