-- Events by client address: `ip=203.0.113.7` ("everything from this address", an
-- investigator's first question) read the log in seq order until a page of matches turned up —
-- the whole log for an address seen rarely. One address's entries are in seq order here, so a
-- page needs no sort; networks use the index when the planner's statistics favour it. Created
-- on the partitioned table, so every month partition (and each new one) gets its own.
CREATE INDEX events_ip ON events (tenant_id, ip, seq) WHERE ip IS NOT NULL;
