-- The leaf tiles (0011) move to their own file, `bitacora-tiles.db`, attached as `tiles` by
-- every connection (schema.rs), whose 32 KiB pages hold three tiles each: a tile read cold is
-- one read of one page there, where the main file's 4 KiB pages made it a slice of a leaf page
-- plus two overflow pages elsewhere (three dependent reads). Derived data, like the full-text
-- file: a lost or stale file is refilled from the events at the next start
-- (`tree::repair_leaf_tiles`). The rows are copied as they are, then dropped here.
CREATE TABLE IF NOT EXISTS tiles.leaf_tiles (
    tile   INTEGER PRIMARY KEY,   -- pos >> 8, that is (tenant_id << 32) | (seq >> 8)
    hashes BLOB NOT NULL          -- 256 leaf hashes of 32 bytes, in seq order
);
INSERT OR REPLACE INTO tiles.leaf_tiles (tile, hashes) SELECT tile, hashes FROM main.leaf_tiles;
DROP TABLE main.leaf_tiles;
