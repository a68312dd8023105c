"""The audit: turn the unified store and the agreement into findings.

Stages, each its own module::

    facts     read what the checks need from the store into plain objects (the only reader)
    labels    definition drift, missed labels, cross-system disagreement (pure)
    identity  records that claim the same person, or a person that is gone (pure)
    feedback  outcomes not reported back: lost without reason, converted without opportunity (pure)
    ledger    diff desired findings against stored ones: open, update, resolve, with history
    cli       ``detente audit`` and ``detente explain``

Entry point: ``reconcile(engine, rules, now)`` (``detente.reconcile.ledger``).
"""
