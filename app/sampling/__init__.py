"""Answering MCP servers' ``sampling/createMessage`` with our own models."""
