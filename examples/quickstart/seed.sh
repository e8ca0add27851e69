#!/usr/bin/env bash
# Seeds the quickstart keys. Usage: seed.sh ENDPOINT
set -euo pipefail
e=${1:-http://127.0.0.1:2379}
put() { /usr/bin/etcdctl --endpoints "$e" put "$1" "$2" >/dev/null; }
put /quickstart/services/web/web1 10.0.0.11:8080
put /quickstart/services/web/web2 10.0.0.12:8080
put /quickstart/services/web/web3 10.0.0.13:8080
put /quickstart/apps/billing/config/db/url postgres://db.internal:5432/billing
put /quickstart/apps/billing/config/db/pool 20
put /quickstart/apps/billing/config/feature/invoices-v2 "true"
put /quickstart/apps/billing/config/log-level info
echo "seeded 7 keys under /quickstart/"
