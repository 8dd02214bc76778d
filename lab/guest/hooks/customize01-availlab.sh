#!/bin/sh
# After all packages: install our init and freeze hook, open the database server to the lab
# network, drop what a lab guest never uses. The lab network is only reachable inside lab
# namespaces, so "any address" below still means "the lab"; logins need the per-lab password.
set -eu
root="$1"
here="$(dirname "$0")"
install -m 0755 "$here/../init.sh" "$root/sbin/availlab-init"
install -D -m 0755 "$here/../fsfreeze-hook" "$root/etc/qemu/fsfreeze-hook"
install -D -m 0755 "$here/../freeze-watchdog" "$root/usr/local/sbin/availlab-freeze-watchdog"
install -D -m 0755 "$here/../agent-restart" "$root/usr/local/sbin/availlab-agent-restart"
for db in "$here"/../db/*.sh; do  # the one database this image's packages installed
    if (. "$db"; db_installed "$root"); then
        install -D -m 0644 "$db" "$root/usr/local/lib/availlab/db.sh"
        (. "$db"; db_customize "$root")
    fi
done
echo '/dev/vda / ext4 rw,noatime 0 1' > "$root/etc/fstab"
echo guest > "$root/etc/hostname"
rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"* "$root/usr/share/doc/"* "$root/usr/share/man/"*
