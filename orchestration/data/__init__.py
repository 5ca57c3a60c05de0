"""Training and evaluation data: the Alpaca-style prompt, local/hub JSON datasets, synthetic arithmetic."""
