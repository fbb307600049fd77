"""What a quality gate's Data Docs cost as results accumulate, in one run on one GX project.

Each validation of a retention's worth of stored results used to rebuild the whole Data Docs site
(GX's UpdateDataDocsAction: the validation's page and the index of every stored result); K2's gates
now render the validation's own page and rebuild the index only when missing or over
DOCS_INDEX_REFRESH_S old (k2.quality.gate._build_docs). This stores --results validations of a real
suite (pandas engine, no Spark), timing each one's page, then times one full index build: the
baseline, the cost every validation paid before.

    .venv/bin/python benchmarks/quality_docs.py [--results 400]

Prints the figures and writes benchmarks/results/quality_docs.json.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from _harness import median, progress, write_results

from k2.quality import gate
from k2.quality.docs import quality_root
from k2.quality.suites import load_suite
from k2.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=int, default=400, help="validations to store before the index build")
    args = parser.parse_args()
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import pandas as pd
    from great_expectations.core.run_identifier import RunIdentifier

    with tempfile.TemporaryDirectory() as home:
        settings = Settings.from_env({}, home=Path(home))
        root = quality_root(settings)
        root.mkdir(parents=True)
        context = gate._runtime_context(root)
        suite = load_suite(settings.batch.expectations_dir, "silver", "binance")
        checkpoint = gate._checkpoint(context, suite, local=True)
        frame = pd.DataFrame({"exchange": ["binance"] * 100})
        pages = []
        for n in range(args.results):
            result = checkpoint.run(batch_parameters={"dataframe": frame}, run_id=RunIdentifier(run_name=f"r{n}"))
            ((result_id, _),) = result.run_results.items()
            started = time.perf_counter()
            gate._build_docs(context, result_id, root)
            pages.append(time.perf_counter() - started)
            if (n + 1) % 100 == 0:
                progress(f"{n + 1}/{args.results} validations stored, page median {median(pages):.3f} s")
        started = time.perf_counter()
        context.build_data_docs()  # what each validation did before: the whole site, index included
        full_site_s = time.perf_counter() - started

    per_result_s = full_site_s / args.results
    figures = {
        "results": args.results,
        "page_s_median": round(median(pages), 3),
        "page_s_last_100_median": round(median(pages[-100:]), 3),
        "baseline_full_site_s": round(full_site_s, 2),
        "baseline_s_per_stored_result": round(per_result_s, 4),
        "baseline_at_30_days_s_estimate": round(per_result_s * 30 * 288, 0),  # 24 runs x 12 suites a day
    }
    for key, value in figures.items():
        print(f"{key:32} {value}")
    print(f"wrote {write_results('quality_docs', figures)}")


if __name__ == "__main__":
    main()
