#!/usr/bin/env bash
# The default codon recipe on several seeds, each scored on fresh data it never trained on:
#   1. `codon demo` (trains, then scores 2,000 fresh pairs of 1-100 residues by length bucket);
#   2. 1,000 pairs of exactly 100 residues (the longest promised length);
#   3. 1,000 pairs of exactly 108 residues (the longest piece `--piece-codons auto` cuts).
# The evaluation sets come from generator seeds 5100 and 5108, which no training run uses
# (training draws from seeds 0.. and 10000..). Usage, from the repository root:
#   bash benchmarks/codon_seeds.sh OUT_DIR [SEEDS...] (default seeds: 0 1 2)
# TIME_BUDGET (default 480, the demo's) caps each run's training in seconds.
set -euo pipefail
out=${1:?usage: codon_seeds.sh OUT_DIR [SEEDS...]}
shift || true
seeds=${*:-0 1 2}
budget=${TIME_BUDGET:-480}
mt="python -m minitransformer codon"
mkdir -p "$out"
$mt make-data --n 1000 --min-len 100 --max-len 100 --seed 5100 --out "$out/exactly-100.csv"
$mt make-data --n 1000 --min-len 108 --max-len 108 --seed 5108 --out "$out/exactly-108.csv"
for seed in $seeds; do
    dir="$out/seed-$seed"
    echo "=== seed $seed: demo ($(date -u +%H:%M:%S))"
    /usr/bin/time -f "demo wall %e s" $mt demo --out-dir "$dir" --seed "$seed" --time-budget "$budget" \
        --no-progress --force
    for n in 100 108; do
        echo "=== seed $seed: 1,000 proteins of exactly $n residues"
        $mt evaluate --model "$dir/model.npz" --data "$out/exactly-$n.csv"
    done
done
