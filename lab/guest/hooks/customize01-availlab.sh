#!/bin/sh
# After all packages: install our init, open PostgreSQL to the lab network, drop what a lab guest
# never uses. The lab network is only reachable inside lab namespaces, so 0.0.0.0/0 in pg_hba
# still means "the lab"; authentication is scram-sha-256 with the per-lab password.
set -eu
root="$1"
here="$(dirname "$0")"
install -m 0755 "$here/../init.sh" "$root/sbin/availlab-init"
install -D -m 0755 "$here/../fsfreeze-hook" "$root/etc/qemu/fsfreeze-hook"
conf="$root/etc/postgresql/15/main"
mkdir -p "$conf/conf.d"
cat > "$conf/conf.d/availlab.conf" <<'CONF'
listen_addresses = '*'
password_encryption = 'scram-sha-256'
CONF
echo 'host all all 0.0.0.0/0 scram-sha-256' >> "$conf/pg_hba.conf"
echo '/dev/vda / ext4 rw,noatime 0 1' > "$root/etc/fstab"
echo guest > "$root/etc/hostname"
rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"* "$root/usr/share/doc/"* "$root/usr/share/man/"*
