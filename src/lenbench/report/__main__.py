"""``python -m lenbench.report`` (``make report``): tables and figures comparing the jobs of an experiment, from
MLflow. The command line only; the report itself is :func:`lenbench.report.build.build_report`."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from datetime import datetime
from pathlib import Path

from lenbench.tracking.errors import TrackingError
from lenbench.tracking.store import default_tracking_uri


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lenbench.report", description=__doc__)
    add = parser.add_argument
    add("--experiment", default="mimic", help="MLflow experiment (default: mimic, the data set name)")
    add(
        "--sweep-id",
        help="only the jobs of this sweep (its multirun folder, tag sweep_id), with those it resumed",
    )
    add("--filter", default="", help="extra MLflow filter, e.g. \"tags.method = 'psi'\"")
    add("--uri", default=os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(Path.cwd()))
    add("--out", type=Path, default=None, help="output folder (default outputs/report/<time>)")
    add("--no-mlflow", action="store_true", help="do not log the report as an MLflow run")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(levelname)s] %(message)s")
    out = args.out or Path("outputs") / "report" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    from lenbench.report.build import build_report  # deferred: --help stays fast

    try:
        files = build_report(args.uri, args.experiment, out, args.sweep_id, args.filter, not args.no_mlflow)
    except TrackingError as exc:
        logging.getLogger("lenbench").error("%s", exc)
        return 2
    print((out / "summary_headline.md").read_text())
    print(f"report: {len(files)} files in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
