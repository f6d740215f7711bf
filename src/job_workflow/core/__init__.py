"""The pure core: workflows, tasks, contexts, policies, the graph and the runner.

Nothing in here performs I/O, starts threads or reads the wall clock; it
talks to the world only through the ports in :mod:`job_workflow.core.ports`.
"""
