"""The normalize stage: the raw layer becomes the unified model (owners, campaigns, people
linked across Salesforce and HubSpot, opportunities, activities counted once, transitions).

Modules, in the order a run uses them::

    run            normalize(engine, now=..., full=...): every stage, incremental
    owners         users and owners by email         campaigns      Salesforce campaigns
    transitions    history, stage dates, observed    links          what records claim (record_links)
    people         read, then link, people           identity       the linking rules (pure)
    profile        person fields and precedence (pure)
    opportunities  opportunity + deal, their person  activities     copies and per-person counts
    mapping        which CRM field feeds which unified field (rules ``fields:``)
    lookups        owners, campaigns, deal stages for a run
    values         typed reading of raw values; BadRecord for what cannot be read
    batches        paging dirty rows, set-based writes, quarantine
    report         what a run did

Entry point: ``detente.normalize.run.normalize``; CLI: ``detente normalize``.
"""
