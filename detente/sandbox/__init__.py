"""Local Salesforce and HubSpot API servers over one generated world of data."""
