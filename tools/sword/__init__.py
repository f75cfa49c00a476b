"""Reading SWORD Bible modules and pairing two Bibles verse by verse (used by tools/extract_sword.py)."""
