"""RL-ready data: the prompt schema lives in visiong1.types; generators and adapters here."""
