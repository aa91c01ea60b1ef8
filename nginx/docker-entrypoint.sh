#!/bin/sh
# As the official nginx image's entrypoint: the scripts in /docker-entrypoint.d/ run first, in name
# order (docker-compose.tls.yml mounts check-tls.sh there), and one that fails stops the container
# before nginx starts, with its message in the container's log. They are run with sh, so a mounted
# script needs no execute bit.
set -e
for script in /docker-entrypoint.d/*.sh; do
    [ -e "$script" ] || continue
    sh "$script"
done
exec "$@"
