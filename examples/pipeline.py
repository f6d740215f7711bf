"""The demo's workflow, importable as ``pipeline`` from this folder.

It lives in the package (``job_workflow._demo_flows``) so that
``job-workflow demo`` works from an installed package too.
"""

from job_workflow._demo_flows import OrderReport

__all__ = ["OrderReport"]
