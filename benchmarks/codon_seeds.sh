#!/usr/bin/env bash
# The default codon recipe on several seeds, each scored on fresh data it never trained on:
#   1. `codon demo` (trains, then scores 2,000 fresh pairs of 1-100 residues by length bucket);
#   2. another 2,000 pairs of 1-100 residues, the same for every seed;
#   3. 1,000 pairs each of exactly 1, 100 (the longest promised length), 108 and 120 residues
#      (120: the longest trained length, the model's weak edge).
# The evaluation sets come from generator seeds 5000-5120, which no training run uses
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
$mt make-data --n 2000 --min-len 1 --max-len 100 --seed 5000 --out "$out/independent-2000.csv"
for n in 1 100 108 120; do
    $mt make-data --n 1000 --min-len $n --max-len $n --seed $((5000 + n)) --out "$out/exactly-$n.csv"
done
for seed in $seeds; do
    dir="$out/seed-$seed"
    echo "=== seed $seed: demo ($(date -u +%H:%M:%S))"
    /usr/bin/time -f "demo wall %e s" $mt demo --out-dir "$dir" --seed "$seed" --time-budget "$budget" \
        --no-progress --force
    echo "=== seed $seed: 2,000 more proteins of 1-100 residues"
    $mt evaluate --model "$dir/model.npz" --data "$out/independent-2000.csv"
    for n in 1 100 108 120; do
        echo "=== seed $seed: 1,000 proteins of exactly $n residues"
        $mt evaluate --model "$dir/model.npz" --data "$out/exactly-$n.csv"
    done
done
