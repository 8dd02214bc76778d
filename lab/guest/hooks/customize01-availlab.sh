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
if [ -d "$root/etc/postgresql/15/main" ]; then
    conf="$root/etc/postgresql/15/main"
    mkdir -p "$conf/conf.d"
    cat > "$conf/conf.d/availlab.conf" <<'CONF'
listen_addresses = '*'
password_encryption = 'scram-sha-256'
CONF
    echo 'host all all 0.0.0.0/0 scram-sha-256' >> "$conf/pg_hba.conf"
fi
if [ -x "$root/usr/sbin/mariadbd" ]; then
    cat > "$root/etc/mysql/mariadb.conf.d/60-availlab.cnf" <<'CONF'
[mariadbd]
bind-address = 0.0.0.0
skip-name-resolve
innodb_buffer_pool_size = 64M
CONF
    # the package's postinst normally creates the system tables; make sure they exist
    [ -d "$root/var/lib/mysql/mysql" ] ||
        chroot "$root" mariadb-install-db --user=mysql --datadir=/var/lib/mysql --skip-test-db > /dev/null
fi
echo '/dev/vda / ext4 rw,noatime 0 1' > "$root/etc/fstab"
echo guest > "$root/etc/hostname"
rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"* "$root/usr/share/doc/"* "$root/usr/share/man/"*
