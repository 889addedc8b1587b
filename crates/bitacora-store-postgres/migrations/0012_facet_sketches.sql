-- Sketches beside the facets (bitacora_store::sketch, src/facets.rs): per combination, per
-- block and per log, 256 bits (four bigints) saying which client-address areas (the /16 of
-- an IPv4 address, the /32 of an IPv6 one, hashed) its events came from, and 256 saying
-- which actor ids (hashed) they had, OR-ed in by the append's upserts. A search with `ip=` or
-- `actor_id=` drops the combinations and blocks whose bits miss its own, so
-- `ip=10.1.0.0/16&outcome=failure` where that network never failed (0.6-1 s at 1M events
-- before) or an actor with an action they never did answer without reading the events. The
-- bits only ever say "maybe" (purges and partition drops do not clear them); a clear bit is
-- a proof of absence, which `verify` checks.
ALTER TABLE event_facets
    ADD COLUMN areas_0 bigint NOT NULL DEFAULT 0, ADD COLUMN areas_1 bigint NOT NULL DEFAULT 0,
    ADD COLUMN areas_2 bigint NOT NULL DEFAULT 0, ADD COLUMN areas_3 bigint NOT NULL DEFAULT 0,
    ADD COLUMN actors_0 bigint NOT NULL DEFAULT 0, ADD COLUMN actors_1 bigint NOT NULL DEFAULT 0,
    ADD COLUMN actors_2 bigint NOT NULL DEFAULT 0, ADD COLUMN actors_3 bigint NOT NULL DEFAULT 0;
ALTER TABLE facet_counts
    ADD COLUMN areas_0 bigint NOT NULL DEFAULT 0, ADD COLUMN areas_1 bigint NOT NULL DEFAULT 0,
    ADD COLUMN areas_2 bigint NOT NULL DEFAULT 0, ADD COLUMN areas_3 bigint NOT NULL DEFAULT 0,
    ADD COLUMN actors_0 bigint NOT NULL DEFAULT 0, ADD COLUMN actors_1 bigint NOT NULL DEFAULT 0,
    ADD COLUMN actors_2 bigint NOT NULL DEFAULT 0, ADD COLUMN actors_3 bigint NOT NULL DEFAULT 0;

-- The bit of an address's area: `sketch::areas::bit` in Rust (a test compares the two). The
-- area is 2^32 + the /16 for an IPv4-mapped address, the first four bytes otherwise; the bit
-- is the top byte of the area times 0x9E3779B97F4A7C15 modulo 2^64 (numeric: bigint would
-- overflow).
CREATE FUNCTION bitacora_area_bit(ip bytea) RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT div(
        (CASE WHEN length(ip) = 16 AND substr(ip, 1, 12) = '\x00000000000000000000ffff'::bytea
              THEN 4294967296 + get_byte(ip, 12) * 256 + get_byte(ip, 13)
              ELSE get_byte(ip, 0)::int8 * 16777216 + get_byte(ip, 1) * 65536
                   + get_byte(ip, 2) * 256 + get_byte(ip, 3)
         END)::numeric * 11400714819323198485 % 18446744073709551616,
        72057594037927936)::integer
$$;

-- The bit of an actor id: the first byte of its SHA-256 (`sketch::actors::bit`).
CREATE FUNCTION bitacora_actor_bit(actor_id text) RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT get_byte(sha256(convert_to(actor_id, 'UTF8')), 0)
$$;

-- Word `w` (0-3) of the sketch with only bit `b` set.
CREATE FUNCTION bitacora_sketch_word(b integer, w integer) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE WHEN b >> 6 = w THEN 1::int8 << (b & 63) ELSE 0 END
$$;

-- Existing events are summarized by `facets::backfill_sketches` (src/migrate.rs), in the
-- same transaction: the block size is a constant of the code.
