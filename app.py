#!/usr/bin/env python3
"""CDK entry point: validate the portfolio, then build its stacks.

    cdk synth                          # every client
    cdk synth -c client=acme-health    # one client (plus the MSP side)
    cdk synth -c overrides=path/to/dir # another portfolio

Bad input prints every problem and exits 2 before any stack is built.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import aws_cdk as cdk

from baseline.portfolio import load_portfolio
from scripts.assembly import stamp_assembly
from scripts.shapes import load_prototypes
from stacks.portfolio import build_app, build_client_stacks


def main() -> int:
    # Feature flags live in cdk.json; read them here too so `python app.py` (what `vend synth`
    # runs) and `cdk synth` build the same templates.
    flags = json.loads((Path(__file__).parent / "cdk.json").read_text())["context"]
    app = cdk.App(outdir=os.environ.get("CDK_OUTDIR", "cdk.out"), analytics_reporting=False, context=flags)
    prototypes = os.environ.get("VEND_PROTOTYPES")
    if prototypes:  # scripts/synth.py: one prototype client per shape, no MSP side
        build_client_stacks(app, *load_prototypes(Path(prototypes)))
        app.synth()
        stamp_assembly(Path(app.outdir))
        return 0
    overrides = Path(app.node.try_get_context("overrides") or os.environ.get("VEND_OVERRIDES") or "overrides")
    # One client or a comma-separated list (`vend diff` synthesizes only the clients a change
    # affects); a list naming no client (",") builds only the MSP side.
    only = app.node.try_get_context("client") or os.environ.get("VEND_CLIENT")
    only_clients = {name.strip() for name in only.split(",") if name.strip()} if only else None
    portfolio, problems = load_portfolio(overrides)
    for problem in problems:
        print(problem, file=sys.stderr)
    if portfolio is None:
        print(f"vend: {len(problems)} problem(s) in {overrides}; nothing synthesized", file=sys.stderr)
        return 2
    unknown = sorted((only_clients or set()) - {c.client for c in portfolio.clients})
    if unknown:
        print(f"vend: no client {', '.join(map(repr, unknown))} in {overrides}", file=sys.stderr)
        return 2
    build_app(app, portfolio, only_client=only_clients)
    app.synth()
    stamp_assembly(Path(app.outdir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
