"""What spark-submit runs to build K2's class-data sharing archive (see k2.class_archive):

spark-submit ... -XX:ArchiveClassesAtExit=... spark_jobs/class_archive.py <work dir>
"""

import sys
from pathlib import Path

from k2.class_archive import train

if __name__ == "__main__":
    train(Path(sys.argv[1]))
