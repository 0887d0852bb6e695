"""MCP client side: connections, tool listing and calls, and conversion to model tools."""
