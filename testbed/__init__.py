"""Test beds for cnid: network namespaces, the VM tier, labs."""
