"""The tamper-evident audit trail (API.md "Audit trail").

`record(sink, action, ...)` notes an action in the unit of work that makes it;
`writer.seal` hash-chains the unit's entries just before COMMIT; `checkpoints`
signs chain heads (Ed25519); `verify` and `export` prove the trail is intact.
"""

from paymentd.audit.context import Actor
from paymentd.audit.entries import diff, record

__all__ = ["Actor", "diff", "record"]
