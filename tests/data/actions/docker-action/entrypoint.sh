#!/bin/sh
set -e
test "$ACTION_ENV" = from-runs-env
test "$GITHUB_ACTION_REPOSITORY" = acme/docker-action
echo "said=hello $INPUT_WHO from $1" >> "$GITHUB_OUTPUT"
echo "FROM_DOCKER_ACTION=yes" >> "$GITHUB_ENV"
echo "saved=$INPUT_WHO" >> "$GITHUB_STATE"
echo made > made-by-docker-action.txt
echo "docker action ran in $(pwd)"
