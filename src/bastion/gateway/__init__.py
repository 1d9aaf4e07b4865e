"""The data path: listeners, runtime, routing, the request pipeline and the streaming proxy."""
