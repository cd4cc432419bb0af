#!/usr/bin/env bash
# Writes .env for the compose stack from .env.example: every `change-me` becomes a
# fresh random secret and the SFTP host and pipeline keys are generated, so that
# `docker compose up` works at once and no two installations share a secret.
# Usage: docker/gen-env.sh [output file, default .env]. Needs ssh-keygen (openssh-client).
# It never overwrites an existing file.
set -euo pipefail

cd "$(dirname "$0")/.."
out=${1:-.env}
if [[ -e $out ]]; then
    echo "$out exists; remove it first if you really want new secrets" >&2
    exit 1
fi
command -v ssh-keygen > /dev/null || { echo "ssh-keygen is needed (openssh-client)" >&2; exit 1; }

hex() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }
fernet_key() { head -c 32 /dev/urandom | base64 | tr '+/' '-_'; }
# One line, newlines as \n, single-quoted: compose keeps it literal and the JSON of
# the Airflow connection turns \n back into newlines.
escaped() { printf "'%s'" "$(awk '{ printf "%s\\n", $0 }' "$1")"; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ssh-keygen -q -t ed25519 -N '' -C govbank-sftp-host -f "$tmp/host"
ssh-keygen -q -t ed25519 -N '' -C govbank-pipeline -f "$tmp/pipeline"

(
    umask 077
    while IFS= read -r line || [[ -n $line ]]; do
        key=${line%%=*}
        case $line in
            AIRFLOW_FERNET_KEY=*) echo "$key=$(fernet_key)" ;;
            AIRFLOW_UID=*) [[ $(id -u) == 0 ]] && echo "$line" || echo "$key=$(id -u)" ;;
            *=change-me) echo "$key=$(hex 24)" ;;
            SFTP_HOST_PRIVATE_KEY=*) echo "$key=$(escaped "$tmp/host")" ;;
            SFTP_HOST_PUBLIC_KEY=*) echo "$key='$(cut -d' ' -f1,2 "$tmp/host.pub")'" ;;
            SFTP_PIPELINE_PRIVATE_KEY=*) echo "$key=$(escaped "$tmp/pipeline")" ;;
            SFTP_PIPELINE_PUBLIC_KEY=*) echo "$key='$(cut -d' ' -f1,2 "$tmp/pipeline.pub")'" ;;
            *) echo "$line" ;;
        esac
    done < .env.example > "$out"
)
echo "wrote $out (keep it secret; it is not committed)" >&2
