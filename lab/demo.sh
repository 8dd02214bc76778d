#!/usr/bin/env bash
# The demo: lab up (builds or reuses the guest image), a PostgreSQL VM on h1, a query from the
# client namespace, and how to go on from there.
set -euo pipefail
cd "$(dirname "$0")/.."
A=.venv/bin/availlab
$A lab up
if ! $A lab status --json | .venv/bin/python -c 'import json,sys; sys.exit(0 if any(v["name"]=="sql1" for v in json.load(sys.stdin)["vms"]) else 1)'; then
  $A vm create sql1 --host h1
fi
echo
echo "== SELECT version() through pyodbc from the client namespace:"
$A sql sql1 "SELECT version()"
echo
$A lab status
cat <<'TXT'

Next:
  .venv/bin/availlab sql sql1 "SELECT now()"       # run SQL from the lab's client namespace
  .venv/bin/availlab lab dsn sql1 --show-secret     # ODBC connection string
  .venv/bin/availlab lab down                       # remove everything the lab created
TXT
