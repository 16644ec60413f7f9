"""orderflow's Flask-SocketIO layer: HTTP API, live event stream and the dashboard page."""
