"""finmlops.serving"""
