#!/bin/sh
test "$STATE_saved" = "$INPUT_WHO" || { echo "no state: $STATE_saved"; exit 1; }
echo "docker post ran for $STATE_saved"
