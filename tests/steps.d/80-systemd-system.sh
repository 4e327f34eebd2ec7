#!/bin/sh
# The systemd integration under real systemd 252 in a systemd-nspawn container (about 2 min):
# units verified, exposure at most 3.0, socket activation, READY/StatusText, journald fields,
# watchdog, reload, a drain outliving TimeoutStopSec=, the logind inhibitor.
set -eu
exec bash "$(dirname "$0")/../../packaging/nspawn/systemd-system-test.sh"
