#!/bin/bash
# Command-line face of lib.sh: `nspawn.sh root | minimal-root | boot NAME [ARGS] | run NAME CMD... |
# sh NAME SCRIPT | install NAME BINARY [UNIT_DIR] | stop NAME`.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
command=${1:-}
shift || true
case $command in
    root) nspawn_base_root ;;
    minimal-root) nspawn_minimal_root ;;
    boot) nspawn_boot "$@" ;;
    run) nspawn_run "$@" ;;
    sh) nspawn_sh "$@" ;;
    install) nspawn_install_runner "$@" ;;
    stop) nspawn_stop "$@" ;;
    *) echo "usage: $0 root | minimal-root | boot NAME [ARGS] | run NAME CMD... | sh NAME SCRIPT | install NAME BINARY [UNIT_DIR] | stop NAME" >&2; exit 2 ;;
esac
