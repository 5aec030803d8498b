"""The ordering platform of seed 004 on conveyor: WhatsApp messages, order
expiry, vendor fallback, and five schedules (reports, credit reconciliation,
bidding and wholesaler-confirmation timeouts, payment reminders), with
dead-letter queues and the seed's monitoring endpoints."""
