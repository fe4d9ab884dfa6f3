"""The REST control plane: validates, records, commands the coordinator by Ray handle, returns."""
