"""Contact lists of outbound campaigns: parsing (pure), import and loading (PostgreSQL COPY)."""
