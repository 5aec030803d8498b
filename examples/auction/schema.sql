-- The auction example's PostgreSQL schema: the durable record of auctions and
-- accepted bids. Redis decides bids; these tables are written by the workers.
-- Idempotent: applied at every start.

CREATE TABLE IF NOT EXISTS auctions (
    id                UUID PRIMARY KEY,
    title             TEXT NOT NULL,
    starting_price    NUMERIC(12, 2) NOT NULL CHECK (starting_price > 0),
    min_increment     NUMERIC(12, 2) NOT NULL CHECK (min_increment > 0),
    current_bid       NUMERIC(12, 2),
    highest_bidder_id UUID,
    winning_bid_id    UUID,
    total_bids        INTEGER NOT NULL DEFAULT 0,
    start_time        TIMESTAMPTZ NOT NULL,
    end_time          TIMESTAMPTZ NOT NULL,
    status            TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'ended')),
    ended_at          TIMESTAMPTZ,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS bids (
    id           UUID PRIMARY KEY,
    auction_id   UUID NOT NULL REFERENCES auctions (id),
    bidder_id    UUID NOT NULL,
    amount       NUMERIC(12, 2) NOT NULL CHECK (amount > 0),
    bid_time     TIMESTAMPTZ NOT NULL,
    previous_bid NUMERIC(12, 2),
    is_winning   BOOLEAN NOT NULL DEFAULT FALSE,
    ip_address   INET,
    user_agent   TEXT,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,
    -- Each accepted bid beats the one before, so no two share an amount: a
    -- second insert of one bid under another id is caught here (23505).
    UNIQUE (auction_id, amount)
);

CREATE INDEX IF NOT EXISTS bids_auction_time ON bids (auction_id, bid_time);
