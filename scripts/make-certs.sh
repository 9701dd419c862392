#!/usr/bin/env bash
# Makes the certificates of a d3 cluster with the openssl command line:
#   scripts/make-certs.sh [--days N | --expired] DIR NAME...
# DIR/ca.pem + DIR/ca.key: the cluster CA (made once; an existing CA in DIR is reused, so names
# can be added later); DIR/NAME.pem + DIR/NAME.key per NAME (a node or an app), signed by the CA,
# subject CN=NAME, valid N days from now (default 825). --expired makes certificates whose
# validity ended yesterday (for tests of refusal). Keys: EC P-256, readable by the owner only.
# Every d3 process trusts DIR/ca.pem and presents its NAME.pem; keep ca.key off the nodes.
set -euo pipefail
usage() { echo "usage: scripts/make-certs.sh [--days N | --expired] DIR NAME..." >&2; exit 2; }
days=825
expired=0
while [ $# -gt 0 ]; do
  case "$1" in
    --days) [ $# -ge 2 ] || usage; days="$2"; shift 2 ;;
    --expired) expired=1; shift ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --*) echo "make-certs.sh: unknown option $1" >&2; usage ;;
    *) break ;;
  esac
done
[ $# -ge 2 ] || usage
case "$days" in ''|*[!0-9]*|0) echo "make-certs.sh: --days needs a positive integer, got '$days'" >&2; exit 2 ;; esac
command -v openssl >/dev/null || { echo "make-certs.sh: the openssl command is missing (apt-get install openssl)" >&2; exit 1; }
dir="$1"
shift
for name in "$@"; do
  case "$name" in ''|*[!A-Za-z0-9._-]*|ca) echo "make-certs.sh: bad name '$name' (letters, digits, . _ -; not 'ca')" >&2; exit 2 ;; esac
done
mkdir -p "$dir"
work="$(mktemp -d -t d3-certs-XXXXXX)"
trap 'rm -rf "$work"' EXIT
umask 077

if [ ! -s "$dir/ca.pem" ] || [ ! -s "$dir/ca.key" ]; then
  openssl ecparam -name prime256v1 -genkey -noout -out "$dir/ca.key"
  openssl req -x509 -new -key "$dir/ca.key" -sha256 -days 3650 -subj "/O=d3/CN=d3 cluster CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$dir/ca.pem" 2>/dev/null
  chmod 644 "$dir/ca.pem"
  echo "make-certs.sh: new cluster CA $dir/ca.pem"
fi

# `openssl ca` takes explicit validity dates (needed for --expired); it wants a small database.
touch "$work/index.txt"
echo 01 > "$work/serial"
cat > "$work/ca.cnf" <<CNF
[ca]
default_ca = d3
[d3]
database = $work/index.txt
serial = $work/serial
new_certs_dir = $work
default_md = sha256
policy = any
x509_extensions = leaf
unique_subject = no
copy_extensions = none
[any]
commonName = supplied
organizationName = optional
[leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyAgreement
extendedKeyUsage = serverAuth,clientAuth
CNF
if [ "$expired" = 1 ]; then
  validity=(-startdate "$(date -u -d '-3 days' +%Y%m%d%H%M%SZ)" -enddate "$(date -u -d '-1 day' +%Y%m%d%H%M%SZ)")
else
  validity=(-days "$days")
fi
for name in "$@"; do
  openssl ecparam -name prime256v1 -genkey -noout -out "$dir/$name.key"
  openssl req -new -key "$dir/$name.key" -subj "/O=d3/CN=$name" -out "$work/$name.csr"
  openssl ca -batch -notext -rand_serial -config "$work/ca.cnf" -cert "$dir/ca.pem" -keyfile "$dir/ca.key" \
    "${validity[@]}" -in "$work/$name.csr" -out "$dir/$name.pem" 2>"$work/ca.log" \
    || { cat "$work/ca.log" >&2; exit 1; }
  chmod 644 "$dir/$name.pem"
done
echo "make-certs.sh: $# certificate(s) in $dir ($*), $([ "$expired" = 1 ] && echo "expired yesterday" || echo "valid $days days")"
