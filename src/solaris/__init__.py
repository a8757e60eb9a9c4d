"""SOLARIS Gateway: a token-metering OpenAI-compatible gateway."""
