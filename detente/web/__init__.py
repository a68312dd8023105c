"""The dashboard: the report's numbers, the open findings and each person's explanation, as web pages.

``detente serve`` serves it alone; ``detente run`` serves it beside /healthz, /readyz and /metrics.
"""
