"""`python -m bench NAME [--quick] [--json]`: one benchmark against the real stack.

``quality`` also takes ``--scenario NAME`` (default ``sudden``), ``--seed N`` (default 0) and
``--rename`` (a second run with the client's feature keys renamed, both in one JSON);
``replay`` takes ``--in-process`` (no services: no Kafka or Redis).

The last line of stdout is a single JSON object when ``--json`` is given; otherwise a table.
The stack is started when it is not up and stopped again afterwards in that case.
"""

from __future__ import annotations

import argparse
import sys

import orjson
from rich.console import Console
from rich.table import Table

from bench import BENCHMARKS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("name", choices=[*sorted(BENCHMARKS), "all"])
    parser.add_argument("--quick", action="store_true", help="a short run (what tests call)")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    parser.add_argument("--scenario", help="quality only: the simulator scenario (sudden)")
    parser.add_argument("--seed", type=int, help="quality only: the seed (0)")
    parser.add_argument("--rename", action="store_true", default=None,
                        help="quality only: also run with the client's feature keys renamed")
    parser.add_argument("--in-process", action="store_true", default=None,
                        help="replay only: leave the services part out")
    args = parser.parse_args(argv)
    names = sorted(BENCHMARKS) if args.name == "all" else [args.name]
    options = {k: v for k, v in (("scenario", args.scenario), ("seed", args.seed),
                                 ("rename", args.rename)) if v is not None}
    if options and names != ["quality"]:
        parser.error("--scenario, --seed and --rename apply to the quality benchmark only")
    if args.in_process is not None:
        if names != ["replay"]:
            parser.error("--in-process applies to the replay benchmark only")
        options["in_process"] = True
    err = Console(stderr=True, highlight=False)
    results = {}
    for name in names:
        err.print(f"[bold]bench {name}[/]{' (quick)' if args.quick else ''}")
        results[name] = BENCHMARKS[name](quick=args.quick, console=err, **options)
    out = results[names[0]] if len(names) == 1 else results
    if args.json:
        sys.stdout.write(orjson.dumps(out).decode() + "\n")
    else:
        for name, figures in results.items():
            table = Table("figure", "value", title=f"bench {name}")
            for key, value in figures.items():
                table.add_row(key, f"{value:,.2f}" if isinstance(value, float) else str(value))
            Console().print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
