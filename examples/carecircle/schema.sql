-- CareCircle: users with their time zone, their medications and the times of
-- day to take them, what was sent (one row per job: the idempotency record),
-- uploaded documents (the bytes live here, never in a job) and the failures
-- the workers' `failed` listener recorded. Applied at every start: idempotent.

CREATE TABLE IF NOT EXISTS users (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL,
    email       text NOT NULL,
    tz          text NOT NULL,               -- IANA zone: reminders fire at local time
    push_token  text NOT NULL
);

CREATE TABLE IF NOT EXISTS medications (
    id          bigserial PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES users(id),
    name        text NOT NULL,
    times       text[] NOT NULL,             -- local times of day, 'HH:MM'
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused'))
);

CREATE TABLE IF NOT EXISTS alerts (
    id          bigserial PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES users(id),
    message     text NOT NULL,
    reminder_job_id text UNIQUE,             -- the missed reminder it escalates, if any
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS notification_log (
    job_id        text PRIMARY KEY,          -- a retried or re-run job never sends twice
    kind          text NOT NULL CHECK (kind IN ('reminder', 'urgent')),
    user_id       bigint NOT NULL REFERENCES users(id),
    medication_id bigint REFERENCES medications(id),
    alert_id      bigint REFERENCES alerts(id),
    scheduled_for timestamptz,
    local_time    text,
    sent_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    taken_at      timestamptz               -- the user confirmed the dose
);

CREATE TABLE IF NOT EXISTS documents (
    id            bigserial PRIMARY KEY,
    user_id       bigint NOT NULL REFERENCES users(id),
    filename      text NOT NULL,
    content       bytea NOT NULL,
    status        text NOT NULL DEFAULT 'uploaded',
    runs          integer NOT NULL DEFAULT 0, -- attempts that started the analysis
    sha256        text,
    words         integer,
    fingerprint   text,
    started_at    timestamptz,
    processed_at  timestamptz
);

CREATE TABLE IF NOT EXISTS email_log (
    job_id      text PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES users(id),
    subject     text NOT NULL,
    sent_at     timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE IF NOT EXISTS job_failures (
    id          bigserial PRIMARY KEY,
    queue       text NOT NULL,
    job_id      text NOT NULL,
    job_name    text NOT NULL,
    attempt     integer NOT NULL,
    final       boolean NOT NULL,
    error       text NOT NULL,
    at          timestamptz NOT NULL DEFAULT clock_timestamp()
);
