"""Payment processors behind one protocol; the rest of paymentd imports from here.

Only the neutral types are re-exported (base.__all__): `providers.stripe` (which imports
the Stripe SDK) is imported by whoever builds the provider, so nothing else pulls Stripe
in by accident.
"""

from paymentd.providers.base import *  # noqa: F403 - the neutral vocabulary, as listed in base.__all__
from paymentd.providers.base import __all__  # noqa: F401
