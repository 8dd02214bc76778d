#!/bin/sh
# availlab guest init (PID 1).
#
# Why not systemd: under TCG plain systemd took ~21 s to reach PostgreSQL; this script reaches
# "database ready" in well under the 15 s budget. It does only what the lab needs: mounts,
# network from the per-VM config disk, the guest agent (fsfreeze = VSS stand-in), and the one
# database server the image holds (PostgreSQL, or MariaDB in the mariadb image).
# Every line it prints goes to the serial console, which the host keeps as the VM's console log.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
PG_VERSION=15
PG_BIN=/usr/lib/postgresql/$PG_VERSION/bin
PG_DATA=/var/lib/postgresql/$PG_VERSION/main
PG_CONF=/etc/postgresql/$PG_VERSION/main/postgresql.conf

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

if [ -x /usr/sbin/mariadbd ]; then DATABASE=mariadb; else DATABASE=postgresql; fi

stop_db() {
    if [ "$DATABASE" = mariadb ]; then
        mariadb-admin shutdown >/dev/null 2>&1
    else
        su postgres -s /bin/sh -c "$PG_BIN/pg_ctl -D $PG_DATA -m fast -w stop" >/dev/null 2>&1
    fi
}

stop_all() {
    say "stopping"
    stop_db
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
    stop_db
    run_$DATABASE && say "database accepting connections again ($DATABASE)"
}
trap stop_all TERM INT USR2
trap restart_db HUP

run_postgresql() {
    install -d -o postgres -g postgres -m 2775 /run/postgresql
    if ! su postgres -s /bin/sh -c \
        "$PG_BIN/pg_ctl -D $PG_DATA -o '-c config_file=$PG_CONF' -l /var/log/postgresql/postgresql-$PG_VERSION-main.log -w -t 60 start" >/dev/null
    then
        say "database failed to start (postgresql)"
        tail -n 20 /var/log/postgresql/postgresql-$PG_VERSION-main.log
        return 1
    fi
}

start_postgresql() {
    run_postgresql || return 1
    # The password reaches psql through its environment (\getenv), not its command line, which
    # every process in the guest can read in /proc.
    AVAILLAB_DB_PASSWORD="$AVAILLAB_DB_PASSWORD" \
    su postgres -s /bin/sh -c "psql -q -v ON_ERROR_STOP=1 -v user=$AVAILLAB_DB_USER -v db=$AVAILLAB_DB_NAME" <<'SQL' >/dev/null
\getenv pw AVAILLAB_DB_PASSWORD
SELECT format('CREATE ROLE %I LOGIN', :'user') WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'user') \gexec
SELECT format('ALTER ROLE %I PASSWORD %L', :'user', :'pw') WHERE :'pw' <> '' \gexec
SELECT format('ALTER ROLE %I CREATEDB', :'user') \gexec
SELECT format('GRANT pg_checkpoint TO %I', :'user') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'user') WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
SQL
    [ $? -eq 0 ] || return 2
}

run_mariadb() {
    install -d -o mysql -g mysql -m 0755 /run/mysqld /var/log/mysql
    mariadbd --user=mysql > /var/log/mysql/availlab-mariadbd.log 2>&1 &
    pid=$!
    tries=0
    until mariadb-admin --silent ping >/dev/null 2>&1; do
        tries=$((tries + 1))
        if [ $tries -gt 600 ] || ! kill -0 $pid 2>/dev/null; then
            say "database failed to start (mariadb)"
            tail -n 20 /var/log/mysql/availlab-mariadbd.log
            return 1
        fi
        sleep 0.1
    done
}

start_mariadb() {
    run_mariadb || return 1
    # The password is alphanumeric (availlab.credentials), so it needs no quoting here. The
    # second grant lets the lab's user create scratch databases (availlab_*): a restored dump is
    # verified in one, as PostgreSQL's createdb does.
    mariadb <<SQL >/dev/null
CREATE DATABASE IF NOT EXISTS \`$AVAILLAB_DB_NAME\`;
CREATE USER IF NOT EXISTS '$AVAILLAB_DB_USER'@'%' IDENTIFIED BY '$AVAILLAB_DB_PASSWORD';
ALTER USER '$AVAILLAB_DB_USER'@'%' IDENTIFIED BY '$AVAILLAB_DB_PASSWORD';
GRANT ALL PRIVILEGES ON \`$AVAILLAB_DB_NAME\`.* TO '$AVAILLAB_DB_USER'@'%';
GRANT ALL PRIVILEGES ON \`${AVAILLAB_DB_NAME}\_%\`.* TO '$AVAILLAB_DB_USER'@'%';
SQL
    [ $? -eq 0 ] || return 2
}

start_$DATABASE
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
