"""The HTTP API and the page: one blueprint per concern (orders, workers, workflows, system,
pages), the commands they share with the Socket.IO handlers (`actions`) and the OpenAPI
document. Below the live stream (whose commands are these actions), above the worker hub."""
