"""CareCircle: medication reminders at each user's local time, urgent alerts
that overtake routine reminders, document analysis off the event loop, on
conveyor and PostgreSQL. See README.md."""
