"""MCP client side, in three parts: ``transport`` (how a server is reached: HTTP clients, the
address checks, stdio, OAuth), ``sessions`` (one server's session, its calls, its era, the
warm pool and one run's set of sessions) and ``features`` (what a server may do besides
answering: callbacks, tasks, progress and notes). At the top: the registered servers, tool
listing and conversion, names, schemas, results and failures."""
