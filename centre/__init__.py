"""The anti-fraud centre: takes in every branch gateway's stream, stores and receipts it, shows it
live, pushes signed stop-payment lists, models and thresholds back down, and measures how accurate
the warnings are. See docs/centre.md; ``counterguard centre --help`` for the commands."""
