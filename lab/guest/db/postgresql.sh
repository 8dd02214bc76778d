# The PostgreSQL image's database, for the guest's init (sourced as /usr/local/lib/availlab/db.sh)
# and for the image build (customize01-availlab.sh). One file per database with a lab image: it
# says whether an image root holds it, configures it in the image, and starts, sets up and stops
# it in the guest. Its dialect (lib/availlab/dialects.py) names the packages that install it.
DATABASE=postgresql
PG_VERSION=15
PG_BIN=/usr/lib/postgresql/$PG_VERSION/bin
PG_DATA=/var/lib/postgresql/$PG_VERSION/main
PG_CONF=/etc/postgresql/$PG_VERSION/main/postgresql.conf

db_installed() { [ -d "$1/etc/postgresql/$PG_VERSION/main" ]; }

# At build time: listen on the lab network, SCRAM logins only.
db_customize() {
    conf="$1/etc/postgresql/$PG_VERSION/main"
    mkdir -p "$conf/conf.d"
    cat > "$conf/conf.d/availlab.conf" <<'CONF'
listen_addresses = '*'
password_encryption = 'scram-sha-256'
CONF
    echo 'host all all 0.0.0.0/0 scram-sha-256' >> "$conf/pg_hba.conf"
}

db_run() {
    install -d -o postgres -g postgres -m 2775 /run/postgresql
    if ! su postgres -s /bin/sh -c \
        "$PG_BIN/pg_ctl -D $PG_DATA -o '-c config_file=$PG_CONF' -l /var/log/postgresql/postgresql-$PG_VERSION-main.log -w -t 60 start" >/dev/null
    then
        say "database failed to start (postgresql)"
        tail -n 20 /var/log/postgresql/postgresql-$PG_VERSION-main.log
        return 1
    fi
}

# Started, with the lab's role and database: 1 when it did not start (said why), 2 when the role failed.
db_start() {
    db_run || return 1
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

db_stop() { su postgres -s /bin/sh -c "$PG_BIN/pg_ctl -D $PG_DATA -m fast -w stop" >/dev/null 2>&1; }
