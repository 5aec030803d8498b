"""The pricing platform's background jobs on conveyor: index ingestion, PAM
calculations, signed webhooks and reports (seed 003)."""
