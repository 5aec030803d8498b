-- The pricing platform's tables. Idempotent: applied at every start.

-- Index values (WTI, Brent, ...) as ingestion jobs load them; one row per
-- tenant, series, date and version, so an ingestion that runs twice writes once.
CREATE TABLE IF NOT EXISTS index_values (
    tenant_id    text    NOT NULL,
    series_code  text    NOT NULL,
    value_date   date    NOT NULL,
    version_tag  text    NOT NULL,
    value        numeric NOT NULL,
    source       text    NOT NULL,
    PRIMARY KEY (tenant_id, series_code, value_date, version_tag)
);

CREATE TABLE IF NOT EXISTS ingestions (
    tenant_id    text        NOT NULL,
    series_code  text        NOT NULL,
    as_of_date   date        NOT NULL,
    version_tag  text        NOT NULL,
    rows_loaded  integer     NOT NULL,
    finished_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, series_code, as_of_date, version_tag)
);

-- A calculation batch: contract lines whose price follows an index (a price
-- adjustment mechanism, PAM): adjusted = base_price * index(as_of) / base_index.
CREATE TABLE IF NOT EXISTS calc_batches (
    tenant_id     text        NOT NULL,
    batch_id      text        NOT NULL,
    series_code   text        NOT NULL,
    as_of_date    date        NOT NULL,
    status        text        NOT NULL DEFAULT 'pending',
    runs          integer     NOT NULL DEFAULT 0,
    first_started_at timestamptz,
    completed_at  timestamptz,
    PRIMARY KEY (tenant_id, batch_id)
);

CREATE TABLE IF NOT EXISTS calc_items (
    tenant_id    text    NOT NULL,
    batch_id     text    NOT NULL,
    contract_id  text    NOT NULL,
    base_price   numeric NOT NULL,
    base_index   numeric NOT NULL,
    PRIMARY KEY (tenant_id, batch_id, contract_id)
);

CREATE TABLE IF NOT EXISTS calc_results (
    tenant_id       text    NOT NULL,
    batch_id        text    NOT NULL,
    contract_id     text    NOT NULL,
    index_value     numeric NOT NULL,
    adjusted_price  numeric NOT NULL,
    PRIMARY KEY (tenant_id, batch_id, contract_id)
);

-- Webhooks: each tenant's endpoint and signing secret, and an outbox of
-- messages; a webhook job carries only the message id.
CREATE TABLE IF NOT EXISTS webhook_endpoints (
    tenant_id  text PRIMARY KEY,
    url        text NOT NULL,
    secret     text NOT NULL
);

CREATE TABLE IF NOT EXISTS webhook_messages (
    message_id    text PRIMARY KEY,
    tenant_id     text        NOT NULL,
    event_type    text        NOT NULL,
    payload       jsonb       NOT NULL,
    attempts      integer     NOT NULL DEFAULT 0,
    last_status   integer,
    delivered_at  timestamptz
);

CREATE TABLE IF NOT EXISTS reports (
    tenant_id    text        NOT NULL,
    report_type  text        NOT NULL,
    batch_id     text        NOT NULL,
    format       text        NOT NULL,
    user_id      text        NOT NULL,
    content      bytea       NOT NULL,
    rows         integer     NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, report_type, batch_id, format)
);
