-- Events by client address: `ip=203.0.113.7` ("everything from this address", an
-- investigator's first question) read the log in `pos` order until a page of matches turned
-- up — the whole log for an address seen rarely. One address's entries are in `pos` order
-- (the rowid closes every index key), so a page comes without sorting; networks use it while
-- their matches are few (src/read.rs). Events without an address are not indexed.
CREATE INDEX events_ip ON events (ip) WHERE ip IS NOT NULL;
