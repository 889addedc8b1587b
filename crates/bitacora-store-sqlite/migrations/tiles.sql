-- The leaf tiles' file, `bitacora-tiles.db` (attached as `tiles`; see 0012_leaf_tiles_file.sql
-- and src/tree.rs): created here when the file is new or was lost.
CREATE TABLE IF NOT EXISTS tiles.leaf_tiles (
    tile   INTEGER PRIMARY KEY,   -- pos >> 8, that is (tenant_id << 32) | (seq >> 8)
    hashes BLOB NOT NULL          -- 256 leaf hashes of 32 bytes, in seq order
);
