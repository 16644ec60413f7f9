"""`orderflow serve`: the command and its flags (`command`), the gunicorn process it runs
(`runner`) and that process's front door (`front`: request heads read without a thread,
connection caps, timeouts). The top room: it builds the app with `create_app`."""
