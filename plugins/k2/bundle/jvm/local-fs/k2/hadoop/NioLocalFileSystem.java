package k2.hadoop;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.attribute.PosixFilePermissions;
import org.apache.hadoop.fs.LocalFileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.RawLocalFileSystem;
import org.apache.hadoop.fs.permission.FsPermission;

/**
 * Hadoop's local file system without a process per file.
 *
 * <p>Without Hadoop's native library (pyspark ships none), RawLocalFileSystem sets the mode of
 * every file it creates by running {@code chmod}: a Bronze stream that commits every second
 * (Parquet file, manifest, manifest list, table metadata, checkpoint logs, each with a .crc) forked
 * about 16 processes a second, most of its CPU. This one sets modes through java.nio, and writes
 * no .crc files (Parquet and Avro carry their own checks; existing .crc files are still verified).
 */
public class NioLocalFileSystem extends LocalFileSystem {
  public NioLocalFileSystem() {
    super(new Raw());
    setWriteChecksum(false);
  }

  /** RawLocalFileSystem whose permission changes are system calls, not child processes. */
  public static class Raw extends RawLocalFileSystem {
    @Override
    public void setPermission(Path p, FsPermission permission) throws IOException {
      String mode =
          permission.getUserAction().SYMBOL
              + permission.getGroupAction().SYMBOL
              + permission.getOtherAction().SYMBOL;
      Files.setPosixFilePermissions(pathToFile(p).toPath(), PosixFilePermissions.fromString(mode));
    }
  }
}
