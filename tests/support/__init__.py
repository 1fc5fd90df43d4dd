"""What the test suites share: hang guards, a free port, certificates made outside the product's
checks, ``tjobs`` as a process and ``tjob`` commands run against it."""
