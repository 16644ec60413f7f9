"""Several servers on one PostgreSQL database: this server leads or stands by
(`leadership`), and what it answers about its role (`role`)."""
