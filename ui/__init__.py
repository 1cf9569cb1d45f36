"""What the page shows: cards, the evidence panel, report tables, safe uploads, timers.

Used by app.py only; imports the agent's records, never the other way round."""
