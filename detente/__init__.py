"""detente: keeps Sales and Marketing honest with each other across Salesforce and HubSpot."""

__version__ = "0.1.0"
