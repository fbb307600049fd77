"""The third compiler of an exchange's declared rules (``k2.exchanges.rules``): DuckDB SQL, so that
``k2.query`` parses the records Silver has not processed vectorised, over Arrow and Parquet.

It compiles the exchange's canonical layout (``TradeRules.canonical``: its keys in its order, no
whitespace, each value of its documented type, strings without escapes), which is what the live
exchange sends: every value's JSON text is found by its key, and its type is known. A message is
``handled`` here when it is canonical and each of its trades is *plain*: a time that converts, a
price below 1e10 and a quantity below 1e11 written as plain decimals of at most 8 fractional digits
(so DuckDB's exact DECIMAL arithmetic is Spark's, see ``k2.medallion.duckdb``). Every other record
(poison, hand-made JSON, exotic decimal texts) is left to ``k2.exchanges.tail``, which reads any
JSON as Spark's VARIANT does. ``tests/spark/test_rules_compilers.py`` runs the same corpus through
Spark, Python and DuckDB (with Python taking what DuckDB leaves) and asserts identical outcomes.
"""

from __future__ import annotations

from k2.exchanges.rules import RFC3339, FieldRule, TradeRules

RECORD_COLUMNS = ("kafka_topic", "kafka_partition", "kafka_offset", "kafka_timestamp", "ingested_at", "value")
# plain decimals: integer digits (Silver's exact product needs price < 1e10, quantity < 1e11) and scale
PRICE_DIGITS, QUANTITY_DIGITS, SCALE = 10, 11, 8
# a JSON number that Java writes without exponent: [1e-3, 1e7) (k2.exchanges.tail.java_double)
JAVA_PLAIN_DIGITS = 7
# the parts of an RFC 3339 time (validated by RFC3339 first)
_PARTS = r"^([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}:[0-9]{2}:[0-9]{2})(?:\.([0-9]{1,9}))?(Z|[+-][0-9]{2}:[0-9]{2})$"
_CLOCK = r"^([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]$"


def lit(text: str) -> str:
    """A SQL string literal (DuckDB's strings keep backslashes as they are)."""
    return "'" + text.replace("'", "''") + "'"


def _literal_of(key: str, many: bool) -> str:
    """SQL: the JSON text of ``key``'s value as written (a list of them, one per trade, with
    ``many``): in a canonical payload a key occurs once per object and a string holds no quote, so a
    pattern finds it. Needed for JSON numbers only: DuckDB's JSON functions re-write them."""
    pattern = lit(f'"{key}":([^,}}\\]]*)')
    return f"regexp_extract{'_all' if many else ''}(payload, {pattern}, 1)"


def _path(key: str) -> str:
    return '"' + key.replace('"', '\\"') + '"'


def java_double(raw: str) -> str:
    """SQL: a canonical JSON fraction (no exponent, at most 15 digits, below 1e7) as Java's
    Double.toString writes it, which is how Spark's STRING parse reads it: trailing zeros dropped,
    below 1e-3 in E notation (0.00012 -> 1.2E-4)."""
    whole, frac = f"split_part({raw}, '.', 1)", f"rtrim(split_part({raw}, '.', 2), '0')"
    digits = f"ltrim({frac}, '0')"
    zeros = f"length({frac}) - length({digits})"
    return (
        f"CASE WHEN {whole} <> '0' THEN {whole} || '.' || coalesce(nullif({frac}, ''), '0') "
        f"WHEN {frac} = '' THEN '0.0' "
        f"WHEN {zeros} < 3 THEN '0.' || {frac} "
        f"ELSE left({digits}, 1) || '.' || coalesce(nullif(substr({digits}, 2), ''), '0') || 'E-' || ({zeros} + 1) END"
    )


def _text(rule: FieldRule, value: str, literal: str) -> str:
    """SQL: a canonical value's text as Spark's STRING parse gives it (``value``: DuckDB's JSON text of
    it, strings unquoted; ``literal``: a number as written)."""
    if rule.kind == "number":  # an integer is written as it is, a fraction as Java writes the double
        return f"CASE WHEN contains({literal}, '.') THEN {java_double(literal)} ELSE {literal} END"
    return value  # strings (no escapes in the canonical layout), integers and booleans as written


def _plain(rule: FieldRule, literal: str, digits: int) -> str:
    """SQL: the price or quantity (its ``literal``: a string's content, a number as written) is a
    plain decimal DuckDB computes with exactly as Spark does."""
    pattern = f"[0-9]{{1,{digits}}}(\\.[0-9]{{1,{SCALE}}})?"
    if rule.kind == "number":  # a fraction Java writes in E notation past 1e7 is left to Python
        pattern = f"[0-9]{{1,{digits}}}|[0-9]{{1,{JAVA_PLAIN_DIGITS}}}\\.[0-9]{{1,{SCALE}}}"
    return f"regexp_full_match({literal}, {lit(pattern)})"


def _time_parts(rules: TradeRules, text: str) -> str:
    """SQL: the parts of an RFC 3339 trade time (a struct), as a column of its own (used thrice)."""
    if rules.time_format == "epoch_ms":
        return "NULL"
    return f"regexp_extract({text}, {lit(_PARTS)}, ['y', 'mo', 'd', 'clock', 'frac', 'zone'])"


def _event_time(rules: TradeRules, text: str) -> str:
    """SQL: the trade time as TIMESTAMPTZ (UTC session), or NULL when it does not convert (left to
    Python, which gives Spark's verdict)."""
    if rules.time_format == "epoch_ms":  # a canonical integer: at most 14 digits, within range
        return f"make_timestamp(CAST({text} AS BIGINT) * 1000)::TIMESTAMPTZ"
    sign = "CASE WHEN left(_p.zone, 1) = '-' THEN -1 ELSE 1 END"
    offset = f"{sign} * (CAST(substr(_p.zone, 2, 2) AS INTEGER) * 60 + CAST(substr(_p.zone, 5, 2) AS INTEGER))"
    local = "try_strptime(_p.y || '-' || _p.mo || '-' || _p.d || ' ' || _p.clock, '%Y-%m-%d %H:%M:%S')"
    micros = "CAST(rpad(left(_p.frac, 6), 6, '0') AS BIGINT)"
    # years 1000-9998 only: an offset cannot carry them out of range (Python and Spark judge the rest)
    return (
        f"CASE WHEN regexp_full_match({text}, {lit(RFC3339)}) AND regexp_full_match(_p.clock, {lit(_CLOCK)}) "
        f"AND _p.y BETWEEN '1000' AND '9998' THEN ({local} + to_microseconds({micros}) "
        f"- to_minutes(CASE WHEN _p.zone = 'Z' THEN 0 ELSE {offset} END))::TIMESTAMPTZ END"
    )


def _side(rules: TradeRules, text: str) -> str:
    if not rules.side_map:
        return text
    cases = " ".join(f"WHEN {lit(raw)} THEN {lit(side)}" for raw, side in rules.side_map)
    return f"CASE {text} {cases} END"


def candidates_sql(rules: TradeRules, records: str) -> str:
    """SQL over ``records`` (RECORD_COLUMNS) -> one row per trade of each canonical message: the
    record's columns, the candidate columns (``k2.exchanges.spark.CANDIDATE_COLUMNS``), the decimal
    literals ``price_literal`` and ``quantity_literal``, and ``handled`` (the whole message is
    judged here; rows of other messages are to be dropped and their records given to Python)."""
    keys = [f.key for f in rules.fields]
    numbers = [f.key for f in rules.fields if f.kind == "number"]
    coordinates = ", ".join(RECORD_COLUMNS)
    literals = {k: f"n{i}" for i, k in enumerate(numbers)}
    extracted = "".join(f", {_literal_of(k, rules.many)} AS {literals[k]}" for k in numbers)
    if rules.many:  # each trade object on its own, with its numbers' literals beside it
        objects = f"json_extract(payload, '$.{_path(rules.trades_key)}[*]')"
        unnested = [f"unnest({name}) AS {name}" for name in literals.values()]
        items = ", ".join(
            [f"unnest(range(len({objects})))::INTEGER AS item_index", f"unnest({objects}) AS item", *unnested]
        )
        prefix = "$."
    else:
        items = ", ".join(["0 AS item_index", "payload AS item", *literals.values()])
        prefix = f"$.{_path(rules.trades_key)}."
    paths = ", ".join(lit(prefix + _path(k)) for k in keys)
    value = {k: f"_v[{i + 1}]" for i, k in enumerate(keys)}
    text = {k: _text(rules.field(k), value[k], literals.get(k, "")) for k in keys}
    price, quantity = rules.field(rules.price), rules.field(rules.quantity)
    price_literal = literals.get(rules.price, value[rules.price])
    quantity_literal = literals.get(rules.quantity, value[rules.quantity])
    time_text = text[rules.time]
    handled = " AND ".join(
        [
            _plain(price, "price_literal", PRICE_DIGITS),
            _plain(quantity, "quantity_literal", QUANTITY_DIGITS),
            "event_time IS NOT NULL",
        ]
    )
    if rules.many:  # a message is judged here only if each of its trades is
        handled = f"bool_and({handled}) OVER (PARTITION BY kafka_topic, kafka_partition, kafka_offset)"
    return f"""
WITH messages AS (
  SELECT {coordinates}, try(decode(value)) AS payload FROM {records}
), canonical AS (
  SELECT {coordinates}, payload{extracted} FROM messages WHERE regexp_full_match(payload, {lit(rules.canonical)})
), items AS (
  SELECT {coordinates}, {items} FROM canonical
), valued AS (
  SELECT * EXCLUDE (item), json_extract_string(item, [{paths}]) AS _v FROM items
), timed AS (
  SELECT *, {_time_parts(rules, time_text)} AS _p FROM valued
), typed AS (
  SELECT {coordinates}, item_index,
    {text[rules.symbol]} AS exchange_symbol,
    {text[rules.trade_id]} AS trade_id,
    {_event_time(rules, time_text)} AS event_time,
    {text[rules.price]} AS price_text,
    {text[rules.quantity]} AS quantity_text,
    {_side(rules, text[rules.side])} AS taker_side,
    NULL::VARCHAR AS parse_error,
    NULL::VARCHAR AS parse_detail,
    {price_literal} AS price_literal,
    {quantity_literal} AS quantity_literal
  FROM timed
)
SELECT *, {handled} AS handled FROM typed
"""


def trade_keys_sql(rules: TradeRules, records: str) -> str:
    """SQL over ``records`` -> what a first pass needs to know of each record, cheaply: its position,
    whether it is canonical and, if so, each of its trades' id and time (one row per trade; a record
    that is not canonical has one row, with NULLs). No values, no checks."""
    for key in (rules.trade_id, rules.time):
        if rules.field(key).kind == "number":  # their text would need the number's literal
            raise ValueError(f"a trade's {key} must be a JSON integer or string to be read by its key")
    position = "kafka_topic, kafka_partition, kafka_offset"
    if rules.many:
        objects = f"json_extract(payload, '$.{_path(rules.trades_key)}[*]')"
        items, prefix = f"unnest({objects}) AS item", "$."
    else:
        items, prefix = "payload AS item", f"$.{_path(rules.trades_key)}."
    paths = ", ".join(lit(prefix + _path(k)) for k in (rules.trade_id, rules.time))
    return f"""
WITH flagged AS MATERIALIZED (
  SELECT {position}, payload, coalesce(regexp_full_match(payload, {lit(rules.canonical)}), false) AS canonical
  FROM (SELECT {position}, try(decode(value)) AS payload FROM {records})
), valued AS (
  SELECT {position}, json_extract_string(item, [{paths}]) AS _v
  FROM (SELECT {position}, {items} FROM flagged WHERE canonical)
), timed AS (
  SELECT {position}, _v[1] AS trade_id, _v[2] AS time_text, {_time_parts(rules, "_v[2]")} AS _p FROM valued
)
SELECT {position}, true AS canonical, trade_id, {_event_time(rules, "time_text")} AS event_time FROM timed
UNION ALL
SELECT {position}, false, NULL, NULL FROM flagged WHERE NOT canonical
"""
