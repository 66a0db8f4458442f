"""Judging a rule pack against what happened: the outcomes file (:mod:`.outcomes`) and the scoring
of alerts and risk scores against it (:mod:`.scoring`). ``iopcare evaluate`` is the driver."""
