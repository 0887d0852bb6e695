"""Spend in USD, kept in Redis and shared by every replica: holds, settlement, limits."""
