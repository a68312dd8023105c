"""Pushing the shared numbers to people: the emailed digest per audience and the SLA-breach
webhook (Slack-compatible)."""
