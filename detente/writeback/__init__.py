"""Write back: CRM fields and rep tasks in both systems, planned, diffed and applied exactly once."""
