"""A shop's background jobs on conveyor: e-mails, order auto-cancel, payment
webhooks, payment retries, inventory release, manual review, cron reports,
retention and a dead-letter queue (seed 001)."""
