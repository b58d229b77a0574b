"""The fuzzing campaign: every target, one after another, each until it has run ``--runs`` inputs or for
``--seconds`` (``make fuzz``: FUZZ_RUNS, FUZZ_SECONDS), under libFuzzer's RSS and per-input time limits.

``python -m tests.fuzz.campaign [--seconds S] [--runs N] [--nice] [TARGET ...]``

Each target's log goes to .fuzz/TARGET/campaign.log, new corpus entries to .fuzz/TARGET/corpus, crash inputs
to .fuzz/TARGET/crash-*. A crash stops that target only; the campaign goes on and exits non-zero at the end.
The summary (inputs run, libFuzzer's cov/ft, corpus size, findings) is printed and appended as a Markdown
table row per target to .fuzz/campaign.md, the table tests/fuzz/README.md quotes.
"""

from __future__ import annotations

import argparse
import datetime
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.fuzz.run import ROOT, targets

STATUS = re.compile(rb"#(\d+)\s+(?:INITED|NEW|REDUCE|pulse|DONE|RELOAD)\s+cov: (\d+) ft: (\d+) corp: (\d+)/")
EXECUTED = re.compile(rb"stat::number_of_executed_units: (\d+)")
RATE = re.compile(rb"stat::average_exec_per_sec:\s+(\d+)")
RSS = re.compile(rb"stat::peak_rss_mb:\s+(\d+)")


@dataclass
class Result:
    target: str
    runs: int
    cov: int
    ft: int
    corpus: int
    rate: int
    rss_mb: int
    seconds: float
    finding: str

    def row(self) -> str:
        return (f"| {self.target} | {self.runs:,} | {self.cov} | {self.ft} | {self.corpus} | {self.rate:,} | "
                f"{self.rss_mb} | {self.seconds:.0f} | {self.finding} |")


HEADER = ("| target | inputs run | cov | ft | corpus | exec/s | peak RSS MB | seconds | findings |\n"
          "|---|---|---|---|---|---|---|---|---|")


def run_target(name: str, seconds: int, runs: int, nice: bool, work: Path | None = None,
               artifacts: Path | None = None, seed: int | None = None) -> Result:
    log_dir = artifacts or ROOT / ".fuzz" / name
    log_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "tests.fuzz.run", name, f"-max_total_time={seconds}", f"-runs={runs}",
               "-print_final_stats=1"]
    if seed is not None:
        command.append(f"-seed={seed}")
    if work is not None:
        command += ["--work", str(work)]
    if artifacts is not None:
        command += ["--artifacts", str(artifacts)]
    if nice:
        command = ["nice", "-n", "19", *command]
    before = set(log_dir.glob("crash-*")) | set(log_dir.glob("timeout-*")) | set(log_dir.glob("oom-*"))
    started = time.monotonic()
    proc = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    elapsed = time.monotonic() - started
    output = proc.stdout
    (log_dir / "campaign.log").write_bytes(output)
    statuses = STATUS.findall(output)
    last = statuses[-1] if statuses else (b"0", b"0", b"0", b"0")
    executed = EXECUTED.search(output)
    rate = RATE.search(output)
    rss = RSS.search(output)
    found = sorted((set(log_dir.glob("crash-*")) | set(log_dir.glob("timeout-*")) | set(log_dir.glob("oom-*")))
                   - before)
    finding = "none"
    if proc.returncode != 0:
        finding = ", ".join(p.name for p in found) or f"exit status {proc.returncode} (see campaign.log)"
    return Result(name, int(executed.group(1)) if executed else int(last[0]), int(last[1]), int(last[2]),
                  int(last[3]), int(rate.group(1)) if rate else 0, int(rss.group(1)) if rss else 0, elapsed,
                  finding)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("targets", nargs="*", help="default: all")
    parser.add_argument("--seconds", type=int, default=3600, help="per target, at most (default 3600)")
    parser.add_argument("--runs", type=int, default=1_000_000, help="per target, at most (default 10^6)")
    parser.add_argument("--nice", action="store_true", help="run at nice 19 (a shared machine)")
    options = parser.parse_args(argv)
    names = options.targets or list(targets())
    summary = ROOT / ".fuzz" / "campaign.md"
    summary.parent.mkdir(exist_ok=True)
    with summary.open("a") as out:
        out.write(f"\n{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, --runs {options.runs} "
                  f"--seconds {options.seconds}\n\n{HEADER}\n")
    print(HEADER, flush=True)
    failed = False
    for name in names:
        result = run_target(name, options.seconds, options.runs, options.nice)
        failed |= result.finding != "none"
        print(result.row(), flush=True)
        with summary.open("a") as out:
            out.write(result.row() + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
