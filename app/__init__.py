"""toolbridge: an OpenAI-compatible API that runs remote MCP servers as tools."""
