"""What spark-submit runs for Iceberg maintenance (see k2.lake.maintenance_job):

spark-submit ... spark_jobs/maintenance.py [--namespace bronze] [--report out.json]
"""

import sys

from k2.lake.maintenance_job import main

if __name__ == "__main__":
    sys.exit(main())
