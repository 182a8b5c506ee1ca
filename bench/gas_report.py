"""Gas per contract function, exact, from the contract test suite.

    make bench-gas        (or: python bench/gas_report.py [pytest args])

Runs tests/contracts with brownie's `--gas` profiler against anvil and saves
its report as text (bench/gas-report.txt) and as JSON (bench/gas.json):
{contract: {function: {avg, avg_confirmed, low, high}}}. Figures are gas
units from receipts, so they are exact for the inputs the tests use; "avg"
includes reverted calls, "avg_confirmed" only successful ones.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
CONTRACT = re.compile(r"^(\w+) <Contract>$")
FUNCTION = re.compile(
    r"^\s+[├└]─ (\w+)\s+-\s+avg:\s+(\d+)\s+avg \(confirmed\):\s+(\d+)"
    r"\s+low:\s+(\d+)\s+high:\s+(\d+)$"
)


def parse(report: str) -> dict[str, dict[str, dict[str, int]]]:
    profile: dict[str, dict[str, dict[str, int]]] = {}
    current: str | None = None
    in_profile = False
    for line in report.splitlines():
        if "Gas Profile" in line:
            in_profile = True
            continue
        if not in_profile:
            continue
        if m := CONTRACT.match(line.strip()):
            current = m.group(1)
            profile[current] = {}
        elif (m := FUNCTION.match(line)) and current:
            avg, confirmed, low, high = map(int, m.groups()[1:])
            profile[current][m.group(1)] = {
                "avg": avg,
                "avg_confirmed": confirmed,
                "low": low,
                "high": high,
            }
    return profile


def main(argv: list[str]) -> int:
    cmd = [sys.executable, "-m", "pytest", "tests/contracts", "-q", "--gas", *argv]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    report = ANSI.sub("", result.stdout)
    if result.returncode != 0:
        sys.stdout.write(report[-5000:])
        return result.returncode
    profile = parse(report)
    OUT.mkdir(exist_ok=True)
    (OUT / "gas-report.txt").write_text(report[report.find("Gas Profile") - 33 :])
    (OUT / "gas.json").write_text(json.dumps(profile, indent=2, sort_keys=True) + "\n")
    for contract, functions in sorted(profile.items()):
        print(contract)
        for name, g in sorted(functions.items()):
            print(
                f"  {name:<24} avg {g['avg_confirmed']:>9,}  "
                f"low {g['low']:>9,}  high {g['high']:>9,}"
            )
    print(f"\nwritten: {OUT / 'gas-report.txt'}, {OUT / 'gas.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
