"""State that must outlive one HTTP request, in Redis, so every replica sees the same."""
