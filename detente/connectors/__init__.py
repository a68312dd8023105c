"""One module per CRM: pull pages, push batches, nothing else."""
