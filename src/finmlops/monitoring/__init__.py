"""finmlops.monitoring"""
