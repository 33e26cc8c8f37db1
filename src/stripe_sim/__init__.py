"""stripe_sim: a Stripe API simulator the official SDK talks to as it would to api.stripe.com.

Start it with `python -m stripe_sim --port 12111`, or from Python with
`start_in_thread()` (background thread) or `start_async()` (current loop).
It does not depend on paymentd and can be used on its own.
"""

from .knobs import Config
from .server import AsyncSimHandle, SimApp, SimHandle, start_async, start_in_thread
from .sim import Sim
from .webhooks import signature_header

__all__ = ["AsyncSimHandle", "Config", "Sim", "SimApp", "SimHandle", "signature_header", "start_async",
           "start_in_thread"]
