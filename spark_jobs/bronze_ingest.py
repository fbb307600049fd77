"""What spark-submit runs for a Bronze stream (see k2.streams.job):

spark-submit ... spark_jobs/bronze_ingest.py --exchange binance
"""

import sys

from k2.streams.job import main

if __name__ == "__main__":
    sys.exit(main())
