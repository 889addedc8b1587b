-- Merkle tiles (see src/tree.rs): the 16 complete nodes at base level 4·tier under one node
-- of level 4·tier + 4, as one row of 16 × 32 bytes, so that an inclusion proof reads one row
-- per four levels instead of one row per level. A tile replaces the 30 `merkle_nodes` rows
-- of its four levels; `merkle_nodes` keeps the nodes whose tile is not complete yet.
CREATE TABLE merkle_tiles (
    tenant_id INTEGER NOT NULL,
    tier      INTEGER NOT NULL,
    idx       INTEGER NOT NULL,
    hashes    BLOB NOT NULL,
    PRIMARY KEY (tenant_id, tier, idx)
) WITHOUT ROWID;

-- Stores written before tiles existed: fold their complete tiles now.
INSERT INTO merkle_tiles (tenant_id, tier, idx, hashes)
SELECT tenant_id, level / 4, idx / 16, unhex(group_concat(hex(hash), '' ORDER BY idx))
FROM merkle_nodes
WHERE level >= 4 AND level % 4 = 0
GROUP BY tenant_id, level, idx / 16
HAVING count(*) = 16;

DELETE FROM merkle_nodes
WHERE level >= 4 AND EXISTS (
    SELECT 1 FROM merkle_tiles t
    WHERE t.tenant_id = merkle_nodes.tenant_id
      AND t.tier = merkle_nodes.level / 4
      AND t.idx = (merkle_nodes.idx << (merkle_nodes.level % 4)) >> 4
);
