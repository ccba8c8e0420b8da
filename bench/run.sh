#!/usr/bin/env bash
# Runs every benchmark (or the ones named: data train embed gpu tui, and memory run_real, which are long
# and run only when named) and assembles bench/RESULTS.md
# from the sections they write to bench/results/<area>.md. `bash bench/run.sh --assemble` only rebuilds it.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
areas=("$@")
[ ${#areas[@]} -gt 0 ] || areas=(data embed train gpu tui)
[ "${areas[0]}" != "--assemble" ] || areas=()
for a in "${areas[@]+"${areas[@]}"}"; do
  echo "== bench/bench_$a.py"
  .venv/bin/python "bench/bench_$a.py"
done
{
  echo "# Benchmark results"
  echo
  echo "Made by \`bash bench/run.sh\`; each section names its machine and date. Tests never assert timings."
  for f in bench/results/*.md; do echo; cat "$f"; done
} > bench/RESULTS.md
echo "wrote bench/RESULTS.md"
