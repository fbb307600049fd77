package k2.streams;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.spark.sql.streaming.SourceProgress;
import org.apache.spark.sql.streaming.StreamingQueryListener;
import org.apache.spark.sql.streaming.StreamingQueryProgress;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A Bronze stream's progress, published from the driver's JVM after every micro-batch.
 *
 * <p>The files are those k2.streams.state describes ({@code progress.json}, {@code
 * progress.jsonl}, {@code idle.json}), each replaced atomically; the batch's end offsets are also
 * committed for the stream's Kafka consumer group (k2.kafka.groups). A Python listener did this
 * through py4j: every event crossed into Python and every field came back as a call, with a class
 * lookup scanning each jar on the class path, about 12% of the stream's samples at 200 msg/s.
 * Listener events arrive on Spark's listener bus thread, one at a time, so nothing here is shared.
 */
public class ProgressListener extends StreamingQueryListener {
  private static final Logger LOG = LoggerFactory.getLogger(ProgressListener.class);
  private static final ObjectMapper JSON = new ObjectMapper();
  private static final Duration COMMIT_TIMEOUT = Duration.ofSeconds(10);

  private final Path progress;
  private final Path progressLog;
  private final Path idle;
  private final int history;
  private final long historyMaxBytes;
  private final String bootstrapServers;
  private final String group;
  private KafkaConsumer<byte[], byte[]> committer;

  /**
   * @param history progress.jsonl keeps this many records once it grows past historyMaxBytes
   * @param group the consumer group the end offsets are committed for; empty: none
   */
  public ProgressListener(
      String progress,
      String progressLog,
      String idle,
      int history,
      long historyMaxBytes,
      String bootstrapServers,
      String group) {
    this.progress = Paths.get(progress);
    this.progressLog = Paths.get(progressLog);
    this.idle = Paths.get(idle);
    this.history = history;
    this.historyMaxBytes = historyMaxBytes;
    this.bootstrapServers = bootstrapServers;
    this.group = group;
  }

  @Override
  public void onQueryStarted(QueryStartedEvent event) {}

  @Override
  public void onQueryProgress(QueryProgressEvent event) {
    StreamingQueryProgress p = event.progress();
    try {
      ObjectNode record = progressRecord(p);
      byte[] line = JSON.writeValueAsBytes(record);
      replace(progress, line);
      appendHistory(line);
      if (p.numInputRows() > 0) {
        commitOffsets(record.get("end_offsets"));
      }
    } catch (IOException | RuntimeException e) {
      LOG.warn("k2: could not publish the progress of batch " + p.batchId() + ": " + e);
    }
  }

  /** No new data: proof of life for the stall rule, and the trigger time Bronze settlement reads. */
  @Override
  public void onQueryIdle(QueryIdleEvent event) {
    ObjectNode record = JSON.createObjectNode();
    record.put("idle_at", now());
    record.put("trigger_at", event.timestamp());
    record.put("query_id", event.id().toString());
    try {
      replace(idle, JSON.writeValueAsBytes(record));
    } catch (IOException e) {
      LOG.warn("k2: could not write " + idle + ": " + e);
    }
  }

  @Override
  public void onQueryTerminated(QueryTerminatedEvent event) {
    if (committer != null) {
      committer.close(Duration.ofSeconds(5));
      committer = null;
    }
  }

  /** The fields of k2.streams.state's progress record (the supervisor, settlement, lag read them). */
  static ObjectNode progressRecord(StreamingQueryProgress p) throws IOException {
    SourceProgress[] sources = p.sources();
    SourceProgress source = sources.length > 0 ? sources[0] : null;
    ObjectNode record = JSON.createObjectNode();
    record.put("batch_id", p.batchId());
    record.put("query_id", p.id().toString());
    record.put("run_id", p.runId().toString());
    record.put("timestamp", p.timestamp()); // trigger start, ISO-8601 UTC
    record.put("completed_at", now());
    record.put("rows", p.numInputRows());
    putRate(record, "input_rows_per_s", p.inputRowsPerSecond());
    putRate(record, "processed_rows_per_s", p.processedRowsPerSecond());
    record.put("batch_duration_ms", p.batchDuration());
    ObjectNode durations = record.putObject("duration_ms");
    for (Map.Entry<String, Long> e : p.durationMs().entrySet()) {
      durations.put(e.getKey(), e.getValue());
    }
    // {topic: {partition: next offset}}
    record.set("end_offsets", offsets(source == null ? null : source.endOffset()));
    record.set("latest_offsets", offsets(source == null ? null : source.latestOffset()));
    return record;
  }

  private static JsonNode offsets(String json) throws IOException {
    return json == null || json.isEmpty() ? JSON.createObjectNode() : JSON.readTree(json);
  }

  /** A rate without a value (no time elapsed yet) is null, never NaN: readers get plain JSON. */
  private static void putRate(ObjectNode record, String field, double value) {
    if (Double.isFinite(value)) {
      record.put(field, value);
    } else {
      record.putNull(field);
    }
  }

  private static double now() {
    return System.currentTimeMillis() / 1000.0;
  }

  /** Write beside, then rename over: a reader never sees half a file. */
  private static void replace(Path target, byte[] content) throws IOException {
    Path tmp = target.resolveSibling("." + target.getFileName() + "." + ProcessHandle.current().pid() + ".tmp");
    Files.write(tmp, content);
    Files.move(tmp, target, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
  }

  /** One line per batch, bounded without rewriting the file on every batch. */
  private void appendHistory(byte[] line) throws IOException {
    byte[] withNewline = new byte[line.length + 1];
    System.arraycopy(line, 0, withNewline, 0, line.length);
    withNewline[line.length] = '\n';
    Files.write(progressLog, withNewline, StandardOpenOption.CREATE, StandardOpenOption.APPEND);
    if (Files.size(progressLog) > historyMaxBytes) {
      List<String> lines = Files.readAllLines(progressLog, StandardCharsets.UTF_8);
      List<String> kept = lines.subList(Math.max(0, lines.size() - history), lines.size());
      Path tmp = progressLog.resolveSibling(progressLog.getFileName() + ".tmp");
      Files.write(tmp, kept, StandardCharsets.UTF_8);
      Files.move(tmp, progressLog, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    }
  }

  /**
   * The consumer group's copy of the checkpoint's offsets; a failure is logged, never raised (the
   * next batch commits again), and never holds the stream: the listener bus runs apart from it.
   */
  private void commitOffsets(JsonNode endOffsets) {
    if (group.isEmpty() || endOffsets == null || endOffsets.isEmpty()) {
      return;
    }
    Map<TopicPartition, OffsetAndMetadata> offsets = new HashMap<>();
    for (Map.Entry<String, JsonNode> topic : endOffsets.properties()) {
      for (Map.Entry<String, JsonNode> part : topic.getValue().properties()) {
        offsets.put(
            new TopicPartition(topic.getKey(), Integer.parseInt(part.getKey())),
            new OffsetAndMetadata(part.getValue().asLong()));
      }
    }
    try {
      consumer().commitSync(offsets, COMMIT_TIMEOUT);
    } catch (RuntimeException e) {
      LOG.warn("k2: committing the offsets of group " + group + " failed: " + e);
    }
  }

  private KafkaConsumer<byte[], byte[]> consumer() {
    if (committer == null) {
      Properties props = new Properties();
      props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrapServers);
      props.put(ConsumerConfig.GROUP_ID_CONFIG, group);
      props.put(ConsumerConfig.CLIENT_ID_CONFIG, group + "-offsets");
      props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
      committer = new KafkaConsumer<>(props, new ByteArrayDeserializer(), new ByteArrayDeserializer());
    }
    return committer;
  }
}
