"""Data plane: the in-memory routing table, the routing policy and the invocation path to instances.
Nothing here reads the database or waits on the control plane: control pushes changes into the table."""
