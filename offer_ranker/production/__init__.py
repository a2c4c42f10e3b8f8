"""The production loop on the service's prediction logs: drift monitoring, the A/B report, logs back
to raw logs, and the closed-loop simulation."""
