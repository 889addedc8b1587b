-- Delivery (CONTRACT §10): destinations, stream positions, alert rules and their evaluation
-- state, and the leases that let one server at a time deliver for a destination. `spec` and
-- `state` are JSON owned by bitacora-delivery.
CREATE TABLE delivery_destinations (
    id         text PRIMARY KEY,
    name       text NOT NULL,
    tenant     text,
    spec       text NOT NULL,
    created_at bigint NOT NULL,
    disabled   text
);

CREATE TABLE delivery_positions (
    destination_id  text NOT NULL,
    tenant          text NOT NULL,
    next_seq        bigint NOT NULL,
    last_success_at bigint,
    last_error      text,
    last_error_at   bigint,
    PRIMARY KEY (destination_id, tenant)
);

CREATE TABLE alert_rules (
    id         text PRIMARY KEY,
    name       text NOT NULL,
    tenant     text,
    spec       text NOT NULL,
    created_at bigint NOT NULL
);

CREATE TABLE alert_states (
    rule_id text NOT NULL,
    tenant  text NOT NULL,
    state   text NOT NULL,
    PRIMARY KEY (rule_id, tenant)
);

CREATE TABLE delivery_leases (
    name       text PRIMARY KEY,
    holder     text NOT NULL,
    expires_at bigint NOT NULL
);
