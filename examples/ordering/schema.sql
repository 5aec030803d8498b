-- The ordering platform's tables (applied at every start: idempotent).

CREATE TABLE IF NOT EXISTS vendors (
    id          text PRIMARY KEY,
    zone        text NOT NULL,
    phone       text NOT NULL,
    active      boolean NOT NULL DEFAULT true
);

CREATE TABLE IF NOT EXISTS orders (
    id              text PRIMARY KEY,
    customer_phone  text NOT NULL,
    zone            text NOT NULL,
    amount          numeric(12, 2) NOT NULL,
    vendor_id       text REFERENCES vendors (id),
    status          text NOT NULL DEFAULT 'pending',  -- pending, confirmed, expired, unassigned
    expires_at      timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- Vendors that turned an order down: vendor fallback never offers it to them again.
CREATE TABLE IF NOT EXISTS order_rejections (
    order_id    text NOT NULL REFERENCES orders (id),
    vendor_id   text NOT NULL REFERENCES vendors (id),
    PRIMARY KEY (order_id, vendor_id)
);

-- One row per WhatsApp message job that reached the provider (the job id makes a retry
-- or a worker's crash record it once).
CREATE TABLE IF NOT EXISTS whatsapp_messages (
    job_id          text PRIMARY KEY,
    phone_number    text NOT NULL,
    message         text NOT NULL,
    sent_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS biddings (
    id              text PRIMARY KEY,
    order_id        text NOT NULL,
    closes_at       timestamptz NOT NULL,
    status          text NOT NULL DEFAULT 'open',  -- open, awarded, no_bids
    winner          text,
    winning_amount  numeric(12, 2)
);

CREATE TABLE IF NOT EXISTS bids (
    bidding_id      text NOT NULL REFERENCES biddings (id),
    wholesaler      text NOT NULL,
    wholesaler_phone text NOT NULL,
    amount          numeric(12, 2) NOT NULL,
    PRIMARY KEY (bidding_id, wholesaler)
);

-- An awarded wholesaler must confirm before the deadline, else the next bid is asked.
CREATE TABLE IF NOT EXISTS wholesaler_confirmations (
    bidding_id      text NOT NULL REFERENCES biddings (id),
    wholesaler      text NOT NULL,
    deadline        timestamptz NOT NULL,
    status          text NOT NULL DEFAULT 'pending',  -- pending, confirmed, timed_out
    PRIMARY KEY (bidding_id, wholesaler)
);

CREATE TABLE IF NOT EXISTS credit_accounts (
    customer_phone  text PRIMARY KEY,
    balance         numeric(12, 2) NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS credit_ledger (
    id              bigserial PRIMARY KEY,
    customer_phone  text NOT NULL REFERENCES credit_accounts (customer_phone),
    amount          numeric(12, 2) NOT NULL
);

CREATE TABLE IF NOT EXISTS credit_reconciliations (
    job_id          text PRIMARY KEY,
    accounts_fixed  integer NOT NULL,
    run_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS invoices (
    id              text PRIMARY KEY,
    customer_phone  text NOT NULL,
    amount          numeric(12, 2) NOT NULL,
    due_date        date NOT NULL,
    paid            boolean NOT NULL DEFAULT false,
    reminded_on     date
);

CREATE TABLE IF NOT EXISTS daily_reports (
    report_date     date NOT NULL,
    report_type     text NOT NULL,
    orders          integer NOT NULL,
    confirmed       integer NOT NULL,
    expired         integer NOT NULL,
    revenue         numeric(14, 2) NOT NULL,
    messages_sent   integer NOT NULL,
    PRIMARY KEY (report_date, report_type)
);

-- What reached a {queueName}-dlq queue: written by the dead-letter recorder tasks.
CREATE TABLE IF NOT EXISTS dead_letters (
    queue           text NOT NULL,
    job_id          text NOT NULL,
    job_name        text NOT NULL,
    data            jsonb NOT NULL,
    failed_reason   text NOT NULL,
    attempts_made   integer NOT NULL,
    failed_on       bigint NOT NULL,
    PRIMARY KEY (queue, job_id, failed_on)
);
