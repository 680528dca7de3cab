"""Data-subject rights (GDPR/PIPL): export and erasure of one person's data (docs/privacy.md)."""
