"""Fleet deployments: the signed document, and the generations it becomes on disk.

This layer sits beside :mod:`sghost.config`: it turns bytes from the network or
a file into a checked desired state, and knows nothing of running processes.
"""
