"""Training and evaluation data: the prompt templates (Alpaca, short), local/hub JSON datasets, synthetic arithmetic."""
