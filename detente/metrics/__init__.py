"""Shared metrics: funnel, lead value, SLA compliance, cost and the two views, per period."""
