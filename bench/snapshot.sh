#!/bin/sh
# Extract one commit of this repository into a folder and print the folder, so a benchmark
# measures that commit and not whatever is half-edited in the working tree:
#   snap=$(bench/snapshot.sh HEAD) && .venv/bin/python "$snap/bench/edge_vs_peers.py"
# Children run with PYTHONPATH and cwd set to the snapshot (bench/procs.py).
set -eu
rev=$(git rev-parse --short "${1:-HEAD}")
dir="${2:-${TMPDIR:-/tmp}/bench-snap-$rev}"
mkdir -p "$dir"
git archive "$rev" | tar -x -C "$dir"
echo "$rev $(git log -1 --format=%cs "$rev")" > "$dir/.bench-commit"
echo "$dir"
