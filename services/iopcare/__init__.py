"""iopcare: care coordination for intensive outpatient programs (IOP).

Clinic systems publish CloudEvents to Kafka; stream processors keep each patient's engagement
state in Postgres and alert the patient's counselor when a pattern suggests relapse risk or a
need to change the level of care.
"""

__version__ = "0.1.0"
