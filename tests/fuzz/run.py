"""Run one fuzz target under libFuzzer (atheris): ``python -m tests.fuzz.run TARGET [libFuzzer flags...]``.

The target's seed corpus (tests/fuzz/corpus/TARGET, read only) and the dictionary (tests/fuzz/keyless.dict)
are passed for you; new inputs go to the working corpus (``--work DIR``, default .fuzz/TARGET/corpus) and crash
artifacts to .fuzz/TARGET/ (``-artifact_prefix``). Every run has an RSS limit and a per-input time limit;
override them with libFuzzer's own flags, e.g. ``-max_total_time=60 -rss_limit_mb=1024 -timeout=5``.

``python -m tests.fuzz.run --list`` names every target; ``python -m tests.fuzz.run TARGET CRASH_FILE``
replays one input (libFuzzer's usual behaviour for file arguments).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CORPUS = HERE / "corpus"
REGRESSIONS = HERE / "regressions"  # every input that once crashed a target: replayed by each run
DICTIONARY = HERE / "keyless.dict"
# family module (tests/fuzz/fuzz_<family>.py) -> its targets; a run imports (and instruments) only its family.
FAMILIES = {
    "keyless_frames": ("keyless_request", "keyless_response"),
    "tls_record": ("tls_record",),
    "tls_messages": ("tls_messages",),
    "tls_engine": ("tls13_engine", "tls12_engine"),
    "tls_tickets": ("tickets",),
    "edge_http": ("edge_http", "proxy_v2"),
    "config": ("pkcs11_uri", "keyserver_config", "edge_config"),
}
RSS_LIMIT_MB = 2048  # a Python process with cryptography loaded sits near 100 MB
PER_INPUT_TIMEOUT = 10  # seconds; the slowest legitimate input (an RSA-2048 operation) takes milliseconds


def targets(only: str | None = None) -> dict[str, object]:
    """Every target by name (``only``: just the family holding that target, imported alone)."""
    from tests.fuzz.harness import Target

    found: dict[str, Target] = {}
    for family, names in FAMILIES.items():
        if only is not None and only not in names:
            continue
        module = importlib.import_module(f"tests.fuzz.fuzz_{family}")
        for target in module.TARGETS:
            found[target.name] = target
    return found  # type: ignore[return-value]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", nargs="?")
    parser.add_argument("--list", action="store_true", help="list the targets and exit")
    parser.add_argument("--work", type=Path, help="working corpus directory (default .fuzz/TARGET/corpus)")
    parser.add_argument("--artifacts", type=Path, help="where crash inputs go (default .fuzz/TARGET)")
    options, libfuzzer_args = parser.parse_known_args(argv)
    if options.list:
        for name, target in targets().items():
            print(f"{name:20} {target.description}")  # type: ignore[attr-defined]
        return 0
    if not options.target:
        parser.error("name a target (--list shows them)")

    import atheris

    # Instrument our code and the parsers it delegates to (h11 for HTTP, PyYAML for configs): the edges
    # libFuzzer counts as coverage.
    with atheris.instrument_imports(include=["keyless", "h11", "yaml"]):
        found = targets(options.target)
    target = found.get(options.target)
    if target is None:
        parser.error(f"unknown target {options.target!r}; --list shows them")
    from tests.fuzz.harness import quiet_logs

    quiet_logs()
    target.setup()  # type: ignore[attr-defined]

    replay = any(not a.startswith("-") for a in libfuzzer_args)
    args = [sys.argv[0]]
    args += [f"-rss_limit_mb={RSS_LIMIT_MB}", f"-timeout={PER_INPUT_TIMEOUT}",
             f"-max_len={target.max_len}"]  # type: ignore[attr-defined]
    if not replay:
        work = options.work or ROOT / ".fuzz" / options.target / "corpus"
        work.mkdir(parents=True, exist_ok=True)
        artifacts = options.artifacts or ROOT / ".fuzz" / options.target
        artifacts.mkdir(parents=True, exist_ok=True)
        args += [f"-dict={DICTIONARY}", f"-artifact_prefix={artifacts}/", "-print_final_stats=1"]
        args += [*libfuzzer_args, str(work)]
        for seeds in (CORPUS / options.target, REGRESSIONS / options.target):
            if seeds.is_dir():
                args.append(str(seeds))
    else:
        args += libfuzzer_args
    atheris.Setup(args, target.one_input)  # type: ignore[attr-defined]
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
