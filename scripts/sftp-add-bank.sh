#!/usr/bin/env bash
# Give a bank (or the pipeline) an account on the landing SFTP server (OpenSSH).
#
#   sftp-add-bank.sh --pipeline PUBKEY_FILE    once: landing root, groups, the pipeline's account
#   sftp-add-bank.sh BANK_CODE PUBKEY_FILE     add a bank, or replace its key (safe to re-run)
#   sftp-add-bank.sh --sshd-config             print the block to append to sshd_config
#
# Layout it builds (bank-files.md): each bank account is jailed (ChrootDirectory) to
# <root>/<BANK_CODE>, which holds
#   inbox/   owner the bank, group LANDING_GROUP, 2770: the bank uploads, the pipeline
#            reads and removes; nobody else gets in
#   outbox/  owner the pipeline, 0755: the bank reads its receipts, cannot change them
# The pipeline's account is jailed to <root> and sees every bank folder; <root>/.staging
# (the pipeline's only, 0700) is where it uploads receipts before renaming them into an
# outbox (connection extra "staging_dir": "/.staging"), so a bank never sees a partial
# file. Accounts are key-only (locked password: usermod -p '*') and can only speak SFTP
# (internal-sftp; symlinks and hard links refused).
#
# Settings (environment; defaults in brackets):
#   GOVBANK_SFTP_ROOT           landing root, root-owned all the way up [/srv/govbank-sftp]
#   GOVBANK_SFTP_KEYS           authorized keys, one file per account [/etc/ssh/govbank_keys]
#   GOVBANK_SFTP_PIPELINE       the pipeline's account [govbank]
#   GOVBANK_SFTP_PREFIX         prefix of bank account names [none: account = bank code, lower case]
#   GOVBANK_SFTP_BANKS_GROUP    group of every bank account, matched in sshd_config [govbank-banks]
#   GOVBANK_SFTP_LANDING_GROUP  the pipeline's group, writes every inbox [govbank-landing]
#   GOVBANK_SFTP_LOG_LEVEL      internal-sftp log level (INFO logs opens, removes, renames) [INFO]
#
# After --sshd-config is appended to /etc/ssh/sshd_config (at the end: it holds Match
# blocks), check it with `sshd -t` and reload sshd. Adding a bank later needs no reload.
set -euo pipefail

ROOT=${GOVBANK_SFTP_ROOT:-/srv/govbank-sftp}
KEYS=${GOVBANK_SFTP_KEYS:-/etc/ssh/govbank_keys}
PIPELINE=${GOVBANK_SFTP_PIPELINE:-govbank}
PREFIX=${GOVBANK_SFTP_PREFIX:-}
BANKS_GROUP=${GOVBANK_SFTP_BANKS_GROUP:-govbank-banks}
LANDING_GROUP=${GOVBANK_SFTP_LANDING_GROUP:-govbank-landing}
LOG_LEVEL=${GOVBANK_SFTP_LOG_LEVEL:-INFO}
NOLOGIN=/usr/sbin/nologin

die() { echo "sftp-add-bank: $*" >&2; exit 1; }

usage() { sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

# useradd/groupadd fail while another process holds the passwd lock: try again briefly.
retry_locked() {
    local attempt out
    for attempt in 1 2 3 4 5 6 7 8 9 10; do
        if out=$("$@" 2>&1); then return 0; fi
        case $out in
            *lock*) sleep 0.3 ;;
            *) echo "$out" >&2; return 1 ;;
        esac
    done
    echo "$out" >&2
    return 1
}

ensure_group() { getent group "$1" >/dev/null || retry_locked groupadd "$1"; }

# A key-only account: no usable password but not locked (sshd refuses locked accounts).
ensure_account() {  # name home supplementary-group
    local name=$1 home=$2 group=$3
    if id -u "$name" >/dev/null 2>&1; then
        id -nG "$name" | tr ' ' '\n' | grep -qx "$group" \
            || die "account $name exists but is not in group $group; refusing to touch it"
        retry_locked usermod -d "$home" "$name"
    else
        retry_locked useradd -M -U -d "$home" -s "$NOLOGIN" -G "$group" "$name"
    fi
    retry_locked usermod -p '*' "$name"
}

# sshd refuses a ChrootDirectory that is not root-owned and unwritable all the way up.
check_root_path() {
    local p=$1 owner mode
    while :; do
        read -r owner mode < <(stat -c '%u %a' "$p")
        [ "$owner" = 0 ] || die "$p must be owned by root (ChrootDirectory rule)"
        (( (8#$mode & 8#022) == 0 )) || die "$p must not be group- or world-writable (ChrootDirectory rule)"
        [ "$p" = / ] && break
        p=$(dirname "$p")
    done
}

install_key() {  # account pubkey-file
    ssh-keygen -l -f "$2" >/dev/null 2>&1 || die "$2 is not an OpenSSH public key"
    install -d -o root -g root -m 0755 "$KEYS"
    install -o root -g root -m 0644 "$2" "$KEYS/$1"
}

sshd_config() {
    local common="    AuthorizedKeysFile $KEYS/%u
    AuthenticationMethods publickey
    PasswordAuthentication no
    KbdInteractiveAuthentication no
    PermitTTY no
    DisableForwarding yes"
    cat <<CONF
# govbank landing (scripts/sftp-add-bank.sh --sshd-config): SFTP only, key only, jailed.
Match Group $BANKS_GROUP
    ChrootDirectory %h
    ForceCommand internal-sftp -d / -u 0027 -P symlink,hardlink@openssh.com -l $LOG_LEVEL
$common
Match User $PIPELINE
    ChrootDirectory %h
    ForceCommand internal-sftp -d / -u 0022 -P symlink,hardlink@openssh.com -l $LOG_LEVEL
$common
Match all
CONF
}

setup_pipeline() {  # pubkey-file
    [ "$(id -u)" = 0 ] || die "run as root"
    ssh-keygen -l -f "$1" >/dev/null 2>&1 || die "$1 is not an OpenSSH public key"
    check_root_path "$(dirname "$ROOT")"
    install -d -o root -g root -m 0755 "$ROOT"
    check_root_path "$ROOT"
    ensure_group "$LANDING_GROUP"
    ensure_group "$BANKS_GROUP"
    ensure_account "$PIPELINE" "$ROOT" "$LANDING_GROUP"
    install -d -o "$PIPELINE" -g "$PIPELINE" -m 0700 "$ROOT/.staging"
    install_key "$PIPELINE" "$1"
    echo "pipeline account $PIPELINE jailed to $ROOT"
}

add_bank() {  # BANK_CODE pubkey-file
    local code=$1 key=$2 account
    [ "$(id -u)" = 0 ] || die "run as root"
    [[ $code =~ ^[A-Z0-9]{2,16}$ ]] || die "bank code must match [A-Z0-9]{2,16}: $code"
    ssh-keygen -l -f "$key" >/dev/null 2>&1 || die "$key is not an OpenSSH public key"
    account=$PREFIX$(tr '[:upper:]' '[:lower:]' <<<"$code")
    [[ $account =~ ^[a-z_][a-z0-9_-]*$ ]] \
        || die "account name $account is not a valid user name; set GOVBANK_SFTP_PREFIX (e.g. bank_)"
    id -u "$PIPELINE" >/dev/null 2>&1 || die "no pipeline account $PIPELINE yet: run --pipeline first"
    check_root_path "$ROOT"
    ensure_account "$account" "$ROOT/$code" "$BANKS_GROUP"
    install -d -o root -g root -m 0755 "$ROOT/$code"
    install -d -o "$account" -g "$LANDING_GROUP" -m 2770 "$ROOT/$code/inbox"
    install -d -o "$PIPELINE" -g "$PIPELINE" -m 0755 "$ROOT/$code/outbox"
    install_key "$account" "$key"
    echo "bank $code: account $account jailed to $ROOT/$code (inbox/ outbox/)"
}

case ${1:-} in
    --sshd-config) [ $# = 1 ] || usage; sshd_config ;;
    --pipeline) [ $# = 2 ] || usage; setup_pipeline "$2" ;;
    -*|"") usage ;;
    *) [ $# = 2 ] || usage; add_bank "$1" "$2" ;;
esac
