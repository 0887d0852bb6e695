"""How a server is reached: pooled HTTP clients (``clients``), HTTP details (``http``), the
address checks that keep a client-supplied URL out of the cluster (``ssrf``), stdio processes
(``stdio``) and OAuth (``oauth``)."""
