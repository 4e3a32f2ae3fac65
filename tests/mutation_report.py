"""Summarise `mutmut results --all true` (read from stdin): killed / survived / score per module,
then every survivor by name (`mutmut show NAME` prints its diff). Not a test module."""
from __future__ import annotations

import sys
from collections import Counter, defaultdict

# mutmut's words for a mutant the tests caught, and for one they did not ("no tests": no
# selected test reaches the mutated function, so nothing would catch it either)
KILLED = {"killed", "timeout", "segfault"}
SURVIVED = {"survived", "no tests"}


def tally(lines):
    counts: dict[str, Counter] = defaultdict(Counter)
    survivors: list[str] = []
    for line in lines:
        name, sep, status = line.strip().rpartition(": ")
        if not sep or "__mutmut_" not in name:
            continue
        module = name.split(".x_")[0].split(".x\u01c1")[0]
        counts[module][status] += 1
        if status in SURVIVED:
            survivors.append(f"{name}  ({status})")
    return counts, survivors


def main() -> int:
    counts, survivors = tally(sys.stdin)
    print(f"{'module':48} {'killed':>7} {'survived':>9} {'other':>6} {'score':>6}")
    total_killed = total_tested = 0
    for module in sorted(counts):
        c = counts[module]
        killed = sum(c[s] for s in KILLED)
        survived = sum(c[s] for s in SURVIVED)
        other = sum(c.values()) - killed - survived
        tested = killed + survived
        total_killed, total_tested = total_killed + killed, total_tested + tested
        score = f"{100 * killed / tested:.0f}%" if tested else "-"
        print(f"{module:48} {killed:7} {survived:9} {other:6} {score:>6}")
    if total_tested:
        print(f"{'all':48} {total_killed:7} {total_tested - total_killed:9} {'':6} "
              f"{100 * total_killed / total_tested:5.1f}%")
    print("\nsurvivors:" if survivors else "\nno survivors")
    for name in survivors:
        print("  " + name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
