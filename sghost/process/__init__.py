"""The process model: the zygote (fork server) and one resource process.

Also its pipes, what it is started with (``ChildSpec``) and how it reports (events, exit codes).
"""
