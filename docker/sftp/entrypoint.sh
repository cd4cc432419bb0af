#!/usr/bin/env bash
# Sets the SFTP server up on every start, then runs sshd in the foreground.
#
# - Accounts: one per bank that has a contract (include/contracts/*.yaml, mounted
#   read-only), named by its bank code, plus the pipeline's account. UIDs are kept in
#   the state volume so that files keep their owners when the container is recreated.
# - Folders: /srv/sftp/<BANK>/ is the bank's chroot (root-owned); inbox/ is the bank's,
#   group-writable by the pipeline (which reads and removes answered files); outbox/ is
#   the pipeline's, 755, so the bank reads its receipts but cannot change them.
# - Keys: the host key and the pipeline's public key come from .env (docker/gen-env.sh
#   makes them); a bank's public key from docker/sftp/bank-keys/<BANK>.pub, else a
#   demo key pair generated once into the state volume for the operator to hand over.
set -euo pipefail

SFTP_ROOT=/srv/sftp
STATE_DIR=/var/lib/govbank-sftp
AUTH_DIR=/etc/ssh/authorized_keys
CONTRACTS_DIR=${SFTP_CONTRACTS_DIR:-/etc/govbank/contracts}
BANK_KEYS_DIR=${SFTP_BANK_KEYS_DIR:-/etc/govbank/bank-keys}
PIPELINE_USER=${SFTP_PIPELINE_USER:-govbank}
UID_MAP=$STATE_DIR/uids
FIRST_UID=2000

log() { echo "govbank-sftp: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# .env keeps a key's newlines as the two characters \n; turn them back into newlines.
write_key() {
    printf '%b' "$1" > "$2"
    [[ -z $(tail -c1 "$2") ]] || echo >> "$2"
}

uid_for() {
    local uid
    uid=$(awk -v n="$1" '$1 == n { print $2 }' "$UID_MAP")
    if [[ -z $uid ]]; then
        uid=$(awk -v m="$FIRST_UID" '$2 > m { m = $2 } END { print m + 1 }' "$UID_MAP")
        echo "$1 $uid" >> "$UID_MAP"
    fi
    echo "$uid"
}

ensure_group() {  # name gid
    getent group "$1" > /dev/null || groupadd -g "$2" "$1"
}

ensure_user() {  # name uid group supplementary-groups
    if ! id -u "$1" > /dev/null 2>&1; then
        # bank codes are upper case: --badname lets useradd accept them
        useradd --badname -M -d / -s /usr/sbin/nologin -u "$2" -g "$3" -G "$4" "$1"
    fi
    usermod -g "$3" -G "$4" "$1"
    usermod -p '*' "$1"  # unlocked, no password: sshd refuses locked accounts
}

ensure_dir() {  # path owner group mode
    mkdir -p "$1"
    chown "$2:$3" "$1"
    chmod "$4" "$1"
}

mkdir -p "$STATE_DIR/bank-keys" /run/sshd
chmod 700 "$STATE_DIR"
touch "$UID_MAP"
rm -rf "$AUTH_DIR"
install -d -o root -g root -m 755 "$AUTH_DIR"

# Host key
host_key=$STATE_DIR/ssh_host_ed25519_key
if [[ -n ${SFTP_HOST_PRIVATE_KEY:-} ]]; then
    (umask 077 && write_key "$SFTP_HOST_PRIVATE_KEY" "$host_key")
elif [[ ! -s $host_key ]]; then
    log "SFTP_HOST_PRIVATE_KEY is empty: generating a host key; put its public line below"
    log "into .env as SFTP_HOST_PUBLIC_KEY, or the pipeline will refuse the server"
    rm -f "$host_key" "$host_key.pub"
    ssh-keygen -q -t ed25519 -N '' -C govbank-sftp -f "$host_key"
fi
chmod 600 "$host_key"
ssh-keygen -y -f "$host_key" > "$host_key.pub" || die "the SFTP host key is not a valid private key"
log "host key: $(cut -d' ' -f1,2 "$host_key.pub")"

# Banks: every contract's bank_code
mapfile -t banks < <(
    sed -n -E "s/^bank_code:[[:space:]]*[\"']?([A-Z0-9]{2,16})[\"']?[[:space:]]*(#.*)?$/\1/p" \
        "$CONTRACTS_DIR"/*.yaml 2> /dev/null | sort -u
)
((${#banks[@]})) || die "no bank contracts found in $CONTRACTS_DIR"

# The pipeline's account
[[ $PIPELINE_USER =~ ^[a-z_][a-z0-9_-]*$ ]] || die "SFTP_PIPELINE_USER must be lower case"
[[ -n ${SFTP_PIPELINE_PUBLIC_KEY:-} ]] || die "SFTP_PIPELINE_PUBLIC_KEY is empty: run docker/gen-env.sh"
pipeline_uid=$(uid_for "$PIPELINE_USER")
ensure_group sftp-pipeline 1990
ensure_group sftp-banks 1991
ensure_group "$PIPELINE_USER" "$pipeline_uid"
bank_groups=()
for bank in "${banks[@]}"; do
    bank_uid=$(uid_for "$bank")
    ensure_group "bank-${bank,,}" "$bank_uid"
    bank_groups+=("bank-${bank,,}")
done
ensure_user "$PIPELINE_USER" "$pipeline_uid" "$PIPELINE_USER" \
    "$(IFS=,; echo "sftp-pipeline,${bank_groups[*]}")"
printf '%s\n' "$SFTP_PIPELINE_PUBLIC_KEY" > "$AUTH_DIR/$PIPELINE_USER"

ensure_dir "$SFTP_ROOT" root root 755
for bank in "${banks[@]}"; do
    group=bank-${bank,,}
    ensure_user "$bank" "$(uid_for "$bank")" "$group" sftp-banks
    ensure_dir "$SFTP_ROOT/$bank" root root 755
    ensure_dir "$SFTP_ROOT/$bank/inbox" "$bank" "$group" 2770
    ensure_dir "$SFTP_ROOT/$bank/outbox" "$PIPELINE_USER" "$group" 755
    if [[ -s $BANK_KEYS_DIR/$bank.pub ]]; then
        cp "$BANK_KEYS_DIR/$bank.pub" "$AUTH_DIR/$bank"
    else
        demo_key=$STATE_DIR/bank-keys/$bank
        if [[ ! -s $demo_key ]]; then
            ssh-keygen -q -t ed25519 -N '' -C "$bank@govbank-sftp" -f "$demo_key"
            log "generated a demo key for $bank: $demo_key"
        fi
        cp "$demo_key.pub" "$AUTH_DIR/$bank"
    fi
done
chown root:root "$AUTH_DIR"/*
chmod 644 "$AUTH_DIR"/*
log "accounts: $PIPELINE_USER (all banks), ${banks[*]}"

/usr/sbin/sshd -t
exec /usr/sbin/sshd -D -e "$@"
