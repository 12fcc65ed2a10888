"""finmlops.tracking"""
