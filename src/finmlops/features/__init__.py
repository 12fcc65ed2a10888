"""finmlops.features"""
