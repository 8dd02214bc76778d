# The MariaDB image's database, for the guest's init (sourced as /usr/local/lib/availlab/db.sh)
# and for the image build (customize01-availlab.sh); see postgresql.sh beside it.
DATABASE=mariadb

db_installed() { [ -x "$1/usr/sbin/mariadbd" ]; }

# At build time: listen on the lab network, a buffer pool a small guest can hold, system tables.
db_customize() {
    cat > "$1/etc/mysql/mariadb.conf.d/60-availlab.cnf" <<'CONF'
[mariadbd]
bind-address = 0.0.0.0
skip-name-resolve
innodb_buffer_pool_size = 64M
CONF
    # the package's postinst normally creates the system tables; make sure they exist
    [ -d "$1/var/lib/mysql/mysql" ] ||
        chroot "$1" mariadb-install-db --user=mysql --datadir=/var/lib/mysql --skip-test-db > /dev/null
}

db_run() {
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

# Started, with the lab's user and database: 1 when it did not start (said why), 2 when the user failed.
db_start() {
    db_run || return 1
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

db_stop() { mariadb-admin shutdown >/dev/null 2>&1; }
