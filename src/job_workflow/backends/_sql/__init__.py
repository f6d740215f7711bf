"""The SQL backend's private parts: schema, connections and hot statements.

``schema`` declares the tables, ``database`` owns the engine (URL checks,
SQLite's write transactions, retries, error translation), ``queries`` holds
the statements whose locking matters, and ``backend`` maps the queue port
onto them. The public name is :class:`job_workflow.backends.sql.SqlBackend`.
"""
