"""sla-gateway: acknowledge, classify and measure customer mail to a support inbox.

The package is a pure core (parse, classify, calendar, policy) surrounded by thin
adapters (config loading, store, CLI; later SMTP/IMAP intake and the outbox sender).
"""

__version__ = "0.1.0"
