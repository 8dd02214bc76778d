#!/usr/bin/env bash
# The demo: the smoke runbook through papermill brings the lab up (building or reusing the guest
# image), creates the PostgreSQL VM sql1 on h1 if needed and queries it from the client namespace.
set -euo pipefail
cd "$(dirname "$0")/.."
A=.venv/bin/availlab
$A run runbooks/00-lab-smoke.ipynb -p lab default
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
