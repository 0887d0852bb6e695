"""The offline demo: a scripted model and a small MCP server, served by toolbridge itself.

Clearly labelled: the model is ``toolbridge-demo`` and is not an LLM. It is what ``make run``
offers when no model is configured, so the README's first example works without internet.
"""
