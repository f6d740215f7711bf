"""``make demo``: runs ``job-workflow demo`` (see job_workflow._demo)."""

from job_workflow._demo import main

if __name__ == "__main__":
    main()
