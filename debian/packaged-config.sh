#!/bin/sh
# Prints the packaged /etc/act-runner/config.yaml: config.example.yaml with the registration file
# named by absolute path, so `register` run as the service user from any directory writes it
# where the unit looks. Fails if the example's line moved. Usage: packaged-config.sh EXAMPLE
set -eu
packaged=$(sed 's|^  #file: \.runner$|  file: /var/lib/act-runner/.runner|' "$1")
printf '%s\n' "$packaged" | grep -qx '  file: /var/lib/act-runner/.runner' || {
    echo "packaged-config.sh: no '  #file: .runner' line in $1" >&2
    exit 1
}
printf '%s\n' "$packaged"
