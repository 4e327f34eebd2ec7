#!/bin/sh
# The real `act_runner daemon` under real systemd 252 in a systemd-nspawn container, against the
# fake Gitea on the host's loopback (about 70 s): units verified, exposure at most 3.0,
# registration as the service user, READY/StatusText, /metrics through the socket unit, a
# host-mode task with its journald fields (and its embedded-cache save's), the shared cache server
# started by act-runner-cache.socket with its credential, the watchdog fed, reload of runner.capacity, a drain
# on `systemctl stop` outliving TimeoutStopSec= with the task's result delivered, the wait for
# docker.service over D-Bus, host jobs in cgroups of their own (leftovers killed, CPU in the
# journal, stale job cgroups removed after a SIGKILL of the daemon), logind's delay inhibitors while a task runs, and the drain on
# `systemctl poweroff` (PrepareForShutdown).
set -eu
exec bash "$(dirname "$0")/../../packaging/nspawn/systemd-system-test.sh"
