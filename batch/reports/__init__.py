"""Reports over an output: ``verify`` (is it complete?), ``diff`` (what flips between two label
sets) and ``evaluate`` (how good is it against gold), with their metrics and renderings."""
