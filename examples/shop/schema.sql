-- The shop's tables (applied at every start: idempotent). Amounts in rupees.
CREATE TABLE IF NOT EXISTS customers (
    email       text PRIMARY KEY,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS password_resets (
    email       text NOT NULL REFERENCES customers,
    token_hash  text PRIMARY KEY,            -- the token itself never enters a job
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS products (
    sku    text PRIMARY KEY,
    name   text NOT NULL,
    price  integer NOT NULL,
    stock  integer NOT NULL CHECK (stock >= 0)  -- available: on hand minus reserved
);

CREATE TABLE IF NOT EXISTS orders (
    id                 serial PRIMARY KEY,
    customer_email     text NOT NULL REFERENCES customers,
    total              integer NOT NULL,
    status             text NOT NULL DEFAULT 'pending',
    -- pending -> paid -> shipped; pending -> cancelled | payment_failed
    created_at         timestamptz NOT NULL DEFAULT now(),
    paid_at            timestamptz,
    cancelled_at       timestamptz,
    shipped_at         timestamptz,
    stock_released_at  timestamptz            -- set once: the reservation went back
);

CREATE TABLE IF NOT EXISTS order_items (
    order_id  integer NOT NULL REFERENCES orders,
    sku       text NOT NULL REFERENCES products,
    quantity  integer NOT NULL CHECK (quantity > 0),
    price     integer NOT NULL,
    PRIMARY KEY (order_id, sku)
);

-- A webhook's event id is recorded with its effect in one transaction: a
-- second delivery finds it and changes nothing.
CREATE TABLE IF NOT EXISTS webhook_events (
    event_id     text PRIMARY KEY,
    provider     text NOT NULL,
    type         text NOT NULL,
    order_id     integer,
    received_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS payments (
    payment_id   text PRIMARY KEY,           -- the provider's id: charged once
    provider     text NOT NULL,
    order_id     integer NOT NULL REFERENCES orders,
    amount       integer NOT NULL,
    status       text NOT NULL,              -- authorized, captured, failed, refund_due, refunded
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS invoices (
    order_id    integer PRIMARY KEY REFERENCES orders,
    number      text NOT NULL UNIQUE,
    amount      integer NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS erp_synced (
    order_id   integer PRIMARY KEY REFERENCES orders,
    synced_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per e-mail: a retried job finds it and does not send again.
CREATE TABLE IF NOT EXISTS emails_sent (
    key        text PRIMARY KEY,             -- template:reference
    recipient  text NOT NULL,
    subject    text NOT NULL,
    sent_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS reviews (
    kind        text NOT NULL,               -- high_value_order, suspicious_payment, return_request
    ref         text NOT NULL,
    order_id    integer REFERENCES orders,
    reason      text NOT NULL,
    status      text NOT NULL DEFAULT 'open',
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, ref)
);

CREATE TABLE IF NOT EXISTS dead_letters (
    queue          text NOT NULL,
    job_id         text NOT NULL,
    name           text NOT NULL,
    failed_reason  text NOT NULL,
    attempts_made  integer NOT NULL,
    data           jsonb NOT NULL,
    parked_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (queue, job_id)
);

CREATE TABLE IF NOT EXISTS daily_reports (
    day        date PRIMARY KEY,
    orders     integer NOT NULL,
    paid       integer NOT NULL,
    cancelled  integer NOT NULL,
    revenue    bigint NOT NULL,
    made_at    timestamptz NOT NULL DEFAULT now()
);
