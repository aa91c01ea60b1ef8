#!/bin/sh
# Run by the nginx image before nginx starts (docker-compose.tls.yml): refuse to start with a
# clear message when the certificate or key cannot work, instead of nginx's terse emerg line.
set -eu
fail() { echo "check-tls: $*" >&2; exit 1; }
for pair in "certificate:$CROPPER_TLS_CERT:BEGIN CERTIFICATE" "private key:$CROPPER_TLS_KEY:PRIVATE KEY-----"; do
    label=${pair%%:*}; rest=${pair#*:}; path=${rest%%:*}; marker=${rest#*:}
    [ -f "$path" ] || fail "TLS $label $path does not exist: mount the folder holding it as TLS_CERT_DIR"
    [ -r "$path" ] || fail "TLS $label $path is not readable by $(id -un): make it readable by root (mode 600 or 640)"
    grep -q -- "$marker" "$path" || fail "TLS $label $path is not PEM (no '$marker' line)"
done
echo "check-tls: $CROPPER_TLS_CERT and $CROPPER_TLS_KEY look usable" >&2
