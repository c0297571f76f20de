"""The Actioner: what happens after a match, durably, reversibly, and with every step on record.

    policy decisions ──► applier ──► plan ──► outbox (a row per action, before anything is attempted)
    a person's decision ─► decisions ─┘          │ runner / an attempt at once
                                                 ▼
                                           dispatch ──► one module per kind: label, review, takedown, report,
                                                        webhook (every outcome, signed, to the operator's tool),
                                                        altitude (review items filed in Altitude; decisions read back),
                                                        exchange-feedback (a person's verdict, to the hash
                                                        exchange whose entry matched)

- `model`: the vocabulary (ActionSpec, Action, Outcome, the ActionKind protocol). `outbox`: the table, claims,
  reversal bookkeeping. `dispatch`: one attempt and its recorded outcome. `runner`: the loop. `actioner`: one
  process's outbox, kinds and runner, and `submit`. `config`: `[actions]`.
- `applier` (the pipeline's automatic decisions) and `decisions` (confirm, reject, a negated label) are the only
  callers of `submit`; `plan` turns a decision's evidence into rows for both (and `exchange_feedback.plan` a
  person's verdict on an exchange's entry into a row for `decisions`).
- A new outbound action is one module implementing `ActionKind`, registered in `actioner`.
"""
