"""Host tier: real kernel and namespaces, no VRF device. Shared fixtures are
in tests/conftest.py."""
