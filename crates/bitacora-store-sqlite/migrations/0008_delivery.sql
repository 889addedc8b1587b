-- Delivery (CONTRACT §10): destinations, stream positions, alert rules and their evaluation
-- state, and the leases that let one server at a time deliver for a destination. `spec` and
-- `state` are JSON owned by bitacora-delivery.
CREATE TABLE delivery_destinations (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    tenant     TEXT,
    spec       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    disabled   TEXT
);

CREATE TABLE delivery_positions (
    destination_id  TEXT NOT NULL,
    tenant          TEXT NOT NULL,
    next_seq        INTEGER NOT NULL,
    last_success_at INTEGER,
    last_error      TEXT,
    last_error_at   INTEGER,
    PRIMARY KEY (destination_id, tenant)
);

CREATE TABLE alert_rules (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    tenant     TEXT,
    spec       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE alert_states (
    rule_id TEXT NOT NULL,
    tenant  TEXT NOT NULL,
    state   TEXT NOT NULL,
    PRIMARY KEY (rule_id, tenant)
);

CREATE TABLE delivery_leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
