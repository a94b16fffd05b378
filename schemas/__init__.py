"""Data contracts (pandera) and configuration models (pydantic) of nad-fusion."""
