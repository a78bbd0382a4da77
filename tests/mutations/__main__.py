"""``python -m tests.mutations [ID ...] [--list] [--no-baseline] [--markdown]``: run the gallery."""
from __future__ import annotations

import argparse
import sys

from .gallery import MUTATIONS
from .harness import MutationDoesNotApply, by_id, run_baseline, run_mutant


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutations", description=__doc__)
    parser.add_argument("ids", nargs="*", help="mutations to run (default: all)")
    parser.add_argument("--list", action="store_true", help="print the table and run nothing")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the clean run of the catching tests before the mutants")
    parser.add_argument("--markdown", action="store_true", help="print the results as a Markdown table")
    args = parser.parse_args(argv)
    try:
        chosen = [by_id(i) for i in args.ids] if args.ids else list(MUTATIONS)
    except KeyError as exc:
        parser.error(str(exc.args[0]))
    if args.list:
        for m in chosen:
            print(f"{m.id:<40} {m.file:<32} {' '.join(m.tests)}")
        return 0
    if not args.no_baseline:
        status, output, seconds = run_baseline(chosen)
        if status != 0:
            print(output[-4000:])
            print(f"the catching tests fail on the unmutated code (pytest exit status {status}): fix them first")
            return 2
        print(f"baseline: the catching tests pass on the unmutated code ({seconds:.1f} s)", flush=True)
    outcomes, failures = [], 0
    for m in chosen:
        try:
            outcome = run_mutant(m)
        except MutationDoesNotApply as exc:
            print(f"ERROR {exc}", flush=True)
            failures += 1
            continue
        outcomes.append(outcome)
        print(f"{outcome.status.upper():<9} {m.id:<40} {outcome.seconds:5.1f} s  {' '.join(m.tests)}", flush=True)
        if not outcome.caught:
            failures += 1
            print(outcome.output[-3000:])
    if args.markdown:
        print("\n| mutant | file | caught by | time |\n|---|---|---|---|")
        for o in outcomes:
            tests = "<br>".join(f"`{t}`" for t in o.mutation.tests)
            print(f"| `{o.mutation.id}` | `{o.mutation.file}` | {tests} | {o.seconds:.1f} s |")
    print(f"{sum(o.caught for o in outcomes)} of {len(chosen)} mutants caught")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
