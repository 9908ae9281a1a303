#!/usr/bin/env bash
# The lent GPU (docs/training.md, "A slice cache, and one lent GPU") receives this checkout's working tree, tracked
# files included, and refuses one over 64 MiB; the evidence under benchmarks/results (fold models, logs) is over 200
# MiB by itself. This script makes the checkout small enough for a device call and gives it back afterwards:
#
#   benchmarks/device_tree.sh size              what would travel now (tracked and untracked-not-ignored files)
#   benchmarks/device_tree.sh slim [PATH...]    switch to a local branch 'device-slim' whose one commit deletes
#                                               benchmarks/results and any PATH given (e.g. the sample data or a model
#                                               a run does not read), and print the size that is left
#   benchmarks/device_tree.sh back              return to the branch 'slim' left, with every file, and drop device-slim
#
# Nothing is lost: 'slim' refuses a checkout with changes, and the deleted files come back from git on 'back'. Paths a
# device call carries (a slice cache, wheels) count towards the 64 MiB too.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
BRANCH=device-slim
ORIGIN_FILE="$(git rev-parse --git-dir)/device-slim-origin"

travelling_mib() {
    git ls-files -z --cached --others --exclude-standard | xargs -0 -r stat -c %s 2>/dev/null |
        awk '{s += $1} END {printf "%.1f\n", s / 1048576}'
}

case "${1:-size}" in
size)
    echo "$(travelling_mib) MiB would travel (the device takes 64 MiB, carried paths included)"
    ;;
slim)
    shift
    if [ -n "$(git status --porcelain)" ]; then
        echo "device_tree.sh: the checkout has changes; commit or stash them first, so that nothing can be lost" >&2
        exit 1
    fi
    if [ "$(git branch --show-current)" = "$BRANCH" ]; then
        echo "device_tree.sh: already on $BRANCH; 'back' first" >&2
        exit 1
    fi
    git branch --show-current > "$ORIGIN_FILE"
    git switch -q -C "$BRANCH"
    git rm -q -r -- benchmarks/results "$@"
    git commit -q -m "device: a working tree small enough to travel (not for main)"
    echo "on $BRANCH: $(travelling_mib) MiB would travel; 'benchmarks/device_tree.sh back' returns to $(cat "$ORIGIN_FILE")"
    ;;
back)
    if [ ! -f "$ORIGIN_FILE" ]; then
        echo "device_tree.sh: no slim checkout to return from" >&2
        exit 1
    fi
    if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
        echo "device_tree.sh: $BRANCH has uncommitted changes to tracked files; keep or drop them first" >&2
        exit 1
    fi
    git switch -q "$(cat "$ORIGIN_FILE")"
    git branch -q -D "$BRANCH"
    rm -f "$ORIGIN_FILE"
    echo "back on $(git branch --show-current): $(travelling_mib) MiB"
    ;;
*)
    echo "usage: benchmarks/device_tree.sh size | slim [PATH...] | back" >&2
    exit 2
    ;;
esac
