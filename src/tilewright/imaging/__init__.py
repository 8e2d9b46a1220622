"""Pixel conventions every part shares: one colour parser (`colour`) and one way to 8-bit (`eight_bit`)."""
