package k2.streams;

import java.util.HashSet;
import java.util.Map;
import java.util.Set;
import org.apache.iceberg.ManifestContent;
import org.apache.iceberg.ManifestFile;
import org.apache.iceberg.PartitionSpec;
import org.apache.iceberg.Snapshot;
import org.apache.iceberg.SnapshotSummary;
import org.apache.iceberg.Table;
import org.apache.iceberg.TableProperties;
import org.apache.iceberg.exceptions.ValidationException;
import org.apache.iceberg.spark.Spark3Util;
import org.apache.spark.sql.SparkSession;

/**
 * A Bronze stream's metadata upkeep with Iceberg's core API, in the driver's JVM, without Spark
 * jobs.
 *
 * <p>The streaming sink appends with a fast append: every micro-batch adds one manifest, and the
 * manifest list of every later snapshot lists them all. {@link #compactManifests} merges the small
 * ones (one manifest per partition, rolled at commit.manifest.target-size-bytes), so a merged
 * manifest that grew big is left alone; {@link #expireSnapshots} drops the old snapshots and the
 * metadata only they reference. The Spark procedure expire_snapshots did the latter with Spark jobs
 * over all_manifests (every retained snapshot times every manifest), 40% of a stream's CPU (JFR).
 *
 * <p>Both commit with Iceberg's retries (the table's commit.retry.* properties) when the stream's own
 * appends or the maintenance DAG commit first. Called from Python through py4j (k2.streams.upkeep).
 */
public final class MetadataUpkeep {
  private static final int ATTEMPTS = 3;

  private MetadataUpkeep() {}

  /** The table as the session's catalog loads it ({@code catalog.namespace.name}). */
  public static Table load(SparkSession spark, String name) throws Exception {
    return Spark3Util.loadIcebergTable(spark, name);
  }

  /** The table's small-manifest threshold: commit.manifest.target-size-bytes (8 MB by default). */
  public static long smallBytes(Table table) {
    String value = table.properties().get(TableProperties.MANIFEST_TARGET_SIZE_BYTES);
    return value == null ? TableProperties.MANIFEST_TARGET_SIZE_BYTES_DEFAULT : Long.parseLong(value);
  }

  /** How many data manifests the current snapshot lists (0 for an empty table). */
  public static int dataManifests(Table table) {
    Snapshot current = table.currentSnapshot();
    return current == null ? 0 : current.dataManifests(table.io()).size();
  }

  /**
   * Merge the current snapshot's data manifests smaller than {@code smallBytes} into one per
   * partition, if there are at least two; returns how many manifests were replaced (0: nothing to
   * do). A concurrent append is retried by Iceberg; a concurrent rewrite of the same manifests (the
   * maintenance DAG) fails validation, and the rewrite starts again from the new state.
   */
  public static int compactManifests(Table table, long smallBytes) {
    for (int attempt = 1; ; attempt++) {
      table.refresh();
      Snapshot before = table.currentSnapshot();
      if (before == null) {
        return 0;
      }
      long small =
          before.dataManifests(table.io()).stream().filter(m -> isSmall(m, smallBytes)).count();
      if (small < 2) {
        return 0;
      }
      Map<Integer, PartitionSpec> specs = table.specs();
      try {
        table
            .rewriteManifests()
            .rewriteIf(m -> isSmall(m, smallBytes))
            .clusterBy(f -> specs.get(f.specId()).partitionToPath(f.partition()))
            .commit();
      } catch (ValidationException e) {
        if (attempt >= ATTEMPTS) {
          throw e;
        }
        continue;
      }
      return replacedSince(table, before.snapshotId());
    }
  }

  /**
   * Expire the snapshots older than {@code olderThanMs} (epoch ms) but the newest {@code
   * retainLast}, and delete the files only they reference; returns how many snapshots went.
   */
  public static int expireSnapshots(Table table, long olderThanMs, int retainLast) {
    table.refresh();
    Set<Long> before = new HashSet<>();
    for (Snapshot s : table.snapshots()) {
      if (s.timestampMillis() < olderThanMs) {
        before.add(s.snapshotId());
      }
    }
    if (before.isEmpty()) {
      return 0;
    }
    table
        .expireSnapshots()
        .expireOlderThan(olderThanMs)
        .retainLast(Math.max(1, retainLast))
        .cleanExpiredFiles(true)
        .commit();
    table.refresh();
    for (Snapshot s : table.snapshots()) {
      before.remove(s.snapshotId());
    }
    return before.size();
  }

  private static boolean isSmall(ManifestFile m, long smallBytes) {
    return m.content() == ManifestContent.DATA && m.length() < smallBytes;
  }

  /** Manifests replaced by the rewrites committed after {@code snapshotId} (ours, appends between). */
  private static int replacedSince(Table table, long snapshotId) {
    int replaced = 0;
    for (Snapshot s = table.currentSnapshot();
        s != null && s.snapshotId() != snapshotId;
        s = s.parentId() == null ? null : table.snapshot(s.parentId())) {
      String count = s.summary().get(SnapshotSummary.REPLACED_MANIFESTS_COUNT);
      if (count != null) {
        replaced += Integer.parseInt(count);
      }
    }
    return replaced;
  }
}
