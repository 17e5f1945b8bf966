"""The sla-gateway test suite: the specification of its behaviour."""
