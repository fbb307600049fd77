"""The query server: a resident process that judges each Kafka record once, on arrival, by Silver's
rules and keeps the valid candidates Silver has not processed, so that ``k2.query`` answers from
typed rows instead of re-judging every unprocessed record at every query."""

Offsets = dict[int, int]  # Kafka partition -> offset
