#!/bin/sh
# availlab guest init (PID 1).
#
# Why not systemd: under TCG plain systemd took ~21 s to reach PostgreSQL; this script reaches
# "database ready" in well under the 15 s budget. It does only what the lab needs: mounts,
# network from the per-VM config disk, the guest agent (fsfreeze = VSS stand-in), and the one
# database server the image holds: its start, set-up and stop are in its own file, installed at
# build time as /usr/local/lib/availlab/db.sh (lab/guest/db/<database>.sh).
# Every line it prints goes to the serial console, which the host keeps as the VM's console log.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

say() { echo "availlab-init: $*"; }

mnt() { mountpoint -q "$3" 2>/dev/null || { mkdir -p "$3"; mount -t "$1" -o "$4" "$2" "$3"; }; }
mnt proc proc /proc nosuid,nodev,noexec
mnt sysfs sys /sys nosuid,nodev,noexec
mnt devtmpfs dev /dev mode=0755
mnt devpts devpts /dev/pts gid=5,mode=620
mnt tmpfs tmpfs /dev/shm nosuid,nodev
mnt tmpfs tmpfs /run nosuid,nodev,mode=0755
mnt tmpfs tmpfs /tmp nosuid,nodev
mount -o remount,rw / 2>/dev/null

# Per-VM settings come from a small read-only disk (vdb) written by the host: KEY=VALUE lines,
# NUL padded. It holds the DB password, so it is never echoed.
AVAILLAB_HOSTNAME=guest AVAILLAB_ADDRESS= AVAILLAB_DB_USER=availlab AVAILLAB_DB_NAME=availlab
AVAILLAB_DB_PASSWORD=
if [ -b /dev/vdb ]; then
    dd if=/dev/vdb bs=4096 count=1 2>/dev/null | tr -d '\000' > /run/availlab.env
    while IFS='=' read -r key value; do
        case "$key" in
            AVAILLAB_HOSTNAME|AVAILLAB_ADDRESS|AVAILLAB_DB_USER|AVAILLAB_DB_NAME|AVAILLAB_DB_PASSWORD)
                eval "$key=\$value" ;;
        esac
    done < /run/availlab.env
    rm -f /run/availlab.env
else
    say "no config disk (vdb): no address, no database password"
fi

hostname "$AVAILLAB_HOSTNAME"
printf '127.0.0.1 localhost\n127.0.1.1 %s\n' "$AVAILLAB_HOSTNAME" > /etc/hosts
ip link set lo up
if [ -n "$AVAILLAB_ADDRESS" ]; then
    ip addr add "$AVAILLAB_ADDRESS" dev eth0
    ip link set eth0 up
    say "eth0 $AVAILLAB_ADDRESS"
fi

mkdir -p /run/availlab  # state of the freeze hook and watchdog
if [ -e /dev/virtio-ports/org.qemu.guest_agent.0 ]; then
    /usr/local/sbin/availlab-freeze-watchdog < /dev/null > /dev/null 2>&1 &
    # no freeze callback: it would fork and exec inside every freeze window (see agent-restart)
    qemu-ga --daemonize -m virtio-serial -p /dev/virtio-ports/org.qemu.guest_agent.0 \
        -f /run/qemu-ga.pid -t /run && say "guest agent started"
fi

DB_SCRIPT=/usr/local/lib/availlab/db.sh  # DATABASE, db_run, db_start, db_stop
if [ -r "$DB_SCRIPT" ]; then
    . "$DB_SCRIPT"
else
    DATABASE=none
    db_run() { say "no database in this image ($DB_SCRIPT is missing)"; return 1; }
    db_start() { db_run; }
    db_stop() { :; }
fi

stop_all() {
    say "stopping"
    db_stop
    [ -f /run/qemu-ga.pid ] && kill "$(cat /run/qemu-ga.pid)" 2>/dev/null
    sync
    say "powering off"
    poweroff -f
}
# SIGHUP restarts the database server, as an operator's restart would: a fast shutdown that ends
# every session, then a start (the lab's role and password are not touched again: a VM restored
# from a template holds its own password, set after the restore).
restart_db() {
    say "restarting the database ($DATABASE)"
    db_stop
    db_run && say "database accepting connections again ($DATABASE)"
}
trap stop_all TERM INT USR2
trap restart_db HUP

db_start
case $? in
    0) say "database accepting connections ($DATABASE)" ;;
    1) ;;  # it said why
    *) say "database started but the lab role could not be set up ($DATABASE)" ;;
esac

# PID 1 must reap orphans for ever; the trap above handles shutdown.
while :; do
    wait
    sleep 1 &
    wait $!
done
