"""tjob on a Ray cluster (issue 18, ``pip install 'tjob[cluster]'``): a gateway that serves the
usual API over mutual TLS and places each job with Ray, and node agents (a ``tjobs`` per node)
that run the jobs. Ray is imported by :mod:`.raycluster` only: the rest of tjob never needs it.

Layout: :mod:`.placement` (limits -> a Ray resource request, pure), :mod:`.raycluster` (Ray:
nodes, placement groups), :mod:`.records` (the gateway's SQLite), :mod:`.nodes` (the gateway's
mTLS channels to node agents), :mod:`.remote` (a job on a node, as the servicer sees a job),
:mod:`.backend` (the gateway's engine), :mod:`.events` (its merged event stream),
:mod:`.services` (the node's and the gateway's servicers), :mod:`.cli` (``tjobs node`` and
``tjobs gateway``).
"""
