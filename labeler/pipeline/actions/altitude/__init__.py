"""`altitude`: review items handed to an Altitude deployment (Jigsaw's open-source review tool), and its moderators'
decisions read back.

    review item ──(rule or bank routed to Altitude)──► `altitude` action ──► handoff: POST /targets/ (the image),
                                                                            POST /signals/ (its hash),
                                                                            POST /cases/ (target + signal)
    poller, every poll_seconds ──► GET /cases/{id} ──► BLOCK: confirm the item · APPROVE: reject it (actor "altitude")

- `api`: Altitude's wire format (its `api.yml` and signal-service handlers) and what its answers mean for retrying.
- `store`: the ids Altitude gave us per review item (`altitude_cases`), so a retry resumes and the poller knows what
  to read.
- `handoff`: the action kind (outbox row, retries, metrics like every outbound call).
- `poller`: reads decisions back. Altitude pushes decisions only to one unsigned `ACTION_RECEIVER_URL`, so we poll.

Child-safety banks' images never leave the labeler: a configuration routing them here is refused at start, and the
hand-off checks the item's bank again before anything is sent.
"""
