"""What spark-submit runs for the batch (see k2.medallion.job):

    spark-submit ... spark_jobs/medallion.py --layer silver --exchange binance \
        --start 2026-11-20T13:00:00Z --end 2026-11-20T14:00:00Z [--report out.json]
"""

import sys

from k2.medallion.job import main

if __name__ == "__main__":
    sys.exit(main())
