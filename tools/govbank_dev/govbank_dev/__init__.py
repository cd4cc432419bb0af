"""Development tools that stay out of the runtime wheel.

``demo`` writes the seeded demo drop (``make demo``, the tests); ``elicense_server`` is
the reference e-licence usage API (elicense-api.md) that the demo, the tests and the
compose stack pull from; ``elicense_data`` makes its usage records from the banks' ELIC
records. The pipeline never imports them.
"""
